// The admin console: create a product and a sale; a live view of each
// sale (stock from the WebSocket, units sold per second drawn on a canvas
// from the stock deltas, the sell-out time); the leaderboard, paged; fraud
// events; the blocklist (add, remove); reconcile per sale.

import { ApiError, h, money, duration, request, get, post, time } from './api.js';
import { SaleBoard, PHASE_WORDS, markPhase, ratePerSecond, startsIn } from './sales.js';

const PAGE = 10;

export class Admin {
  constructor(root, live) {
    this.root = root;
    this.cards = new Map();
    this.board = new SaleBoard(live, () => this.render());
    this.lbOffset = 0;

    this.liveEl = h('div', { class: 'grid', id: 'live-sales' });
    this.productSelect = h('select', { name: 'productId', required: true, id: 'sale-product' });
    this.lbSelect = h('select', { id: 'lb-sale', onchange: () => this.loadLeaderboard(0) });
    this.lbBody = h('tbody');
    this.lbInfo = h('span', { class: 'muted' });
    this.fraudBody = h('tbody');
    this.blockBody = h('tbody');
    this.msgs = {};

    root.replaceChildren(
      h('div', { class: 'columns' },
        h('section', { class: 'main-col' },
          h('h2', {}, 'Live sales'),
          this.liveEl,
          this.leaderboardSection(),
          this.fraudSection(),
        ),
        h('aside', { class: 'side-col' },
          this.productForm(),
          this.saleForm(),
          this.blocklistSection(),
        ),
      ),
    );
    this.tick = setInterval(() => this.render(true), 500);
    this.poll = setInterval(() => this.board.refresh().catch(() => {}), 15000);
  }

  async start() {
    await this.board.refresh();
    await Promise.all([this.loadProducts(), this.loadFraud(), this.loadBlocklist()]);
    this.loadLeaderboard(0);
  }

  stop() {
    clearInterval(this.tick);
    clearInterval(this.poll);
  }

  onEvent(name, data) {
    this.board.onEvent(name, data);
  }

  msg(name) {
    this.msgs[name] ||= h('p', { class: 'outcome', role: 'status', id: `${name}-msg` });
    return this.msgs[name];
  }

  say(name, kind, text) {
    const el = this.msg(name);
    el.textContent = text;
    el.className = `outcome ${kind}`;
  }

  // === Forms ===

  productForm() {
    return h('section', { class: 'card' },
      h('h3', {}, 'New product'),
      h('form', { id: 'product-form', onsubmit: (e) => this.createProduct(e) },
        h('label', {}, 'Name', h('input', { name: 'name', required: true, maxlength: 200 })),
        h('label', {}, 'Description', h('input', { name: 'description', maxlength: 1000 })),
        h('label', {}, 'Price (USD)', h('input', { name: 'price', type: 'number', min: '0.01', step: '0.01', required: true })),
        h('button', { class: 'primary', type: 'submit' }, 'Create product'),
      ),
      this.msg('product'),
    );
  }

  saleForm() {
    const num = (name, label, value, min = 0) =>
      h('label', {}, label, h('input', { name, type: 'number', min, value, required: true }));
    return h('section', { class: 'card' },
      h('h3', {}, 'New flash sale'),
      h('form', { id: 'sale-form', onsubmit: (e) => this.createSale(e) },
        h('label', {}, 'Product', this.productSelect),
        h('div', { class: 'pair' }, num('startsIn', 'Starts in (s)', 10), num('minutes', 'Lasts (min)', 10, 1)),
        h('div', { class: 'pair' }, num('totalUnits', 'Units', 20, 1), num('discount', 'Discount %', 20)),
        h('div', { class: 'pair' }, num('maxPerUser', 'Max per buyer', 2, 1), num('maxPerTransaction', 'Max per purchase', 2, 1)),
        h('button', { class: 'primary', type: 'submit' }, 'Create sale'),
      ),
      this.msg('sale'),
    );
  }

  async createProduct(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const { data } = await post('/api/products', {
        name: f.get('name'),
        description: f.get('description') || undefined,
        price: Number(f.get('price')),
      });
      this.say('product', 'good', `Created ${data.name} (${money(data.price)}).`);
      e.target.reset();
      await this.loadProducts(data.id);
    } catch (err) {
      this.say('product', 'bad', failure(err));
    }
  }

  async createSale(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    const start = Date.now() + Number(f.get('startsIn')) * 1000;
    const end = start + Number(f.get('minutes')) * 60000;
    try {
      const { data } = await post('/api/flash-sales', {
        productId: f.get('productId'),
        startTime: new Date(start).toISOString(),
        endTime: new Date(end).toISOString(),
        discount: Number(f.get('discount')),
        totalUnits: Number(f.get('totalUnits')),
        maxPerUser: Number(f.get('maxPerUser')),
        maxPerTransaction: Number(f.get('maxPerTransaction')),
      });
      this.say('sale', 'good', `Sale ${data.id} created: ${data.totalUnits} units at ${money(data.salePrice)}, starts ${time(data.startTime)}.`);
      await this.board.refresh();
      this.loadLeaderboard(0);
    } catch (err) {
      this.say('sale', 'bad', failure(err));
    }
  }

  async loadProducts(select) {
    const products = await get('/api/products?limit=1000');
    const current = select || this.productSelect.value;
    this.productSelect.replaceChildren(
      ...products.map((p) => h('option', { value: p.id, selected: p.id === current }, `${p.name} — ${money(p.price)}`)),
    );
  }

  // === Live view ===

  render(clockOnly = false) {
    const list = this.board.list();
    if (!clockOnly) {
      for (const [id, c] of this.cards) {
        if (!this.board.sales.has(id)) {
          c.el.remove();
          this.cards.delete(id);
        }
      }
      for (const s of list) if (!this.cards.has(s.id)) this.cards.set(s.id, this.card(s));
      const els = list.map((s) => this.cards.get(s.id).el);
      if (els.some((el, i) => this.liveEl.children[i] !== el)) this.liveEl.replaceChildren(...els);
      if (!list.length) this.liveEl.replaceChildren(h('p', { class: 'muted' }, 'No sales yet: create one.'));
      this.saleOptions(list);
    }
    for (const s of list) this.update(s);
  }

  card(s) {
    const c = {};
    c.badge = h('span', { class: 'badge' });
    c.count = h('strong', { class: 'big stock-count' });
    c.bar = h('progress', { max: s.totalUnits, value: s.availableUnits, class: 'stock-bar' });
    c.clock = h('span', { class: 'clock' });
    c.rate = h('span', { class: 'rate' });
    c.soldOut = h('span', { class: 'sold-out-time' });
    c.canvas = h('canvas', { width: 320, height: 90, class: 'chart', 'aria-label': 'Units sold per second, last 60 s' });
    c.recon = h('p', { class: 'muted recon' });
    c.el = h('article', { class: 'card sale admin-sale', 'data-sale': s.id },
      h('header', {}, h('h3', {}, s.productName), c.badge),
      h('p', { class: 'mono muted' }, s.id),
      h('div', { class: 'stock' }, c.count, h('span', { class: 'muted' }, ` of ${s.totalUnits} left`)),
      c.bar,
      h('p', {}, c.clock, ' ', c.soldOut),
      h('p', { class: 'muted' }, 'Units sold per second (last 60 s) ', c.rate),
      c.canvas,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'reconcile', onclick: () => this.reconcile(s.id, c) }, 'Reconcile'),
        h('button', { type: 'button', onclick: () => { this.lbSelect.value = s.id; this.loadLeaderboard(0); } }, 'Leaderboard'),
      ),
      c.recon,
    );
    return c;
  }

  update(s) {
    const c = this.cards.get(s.id);
    if (!c) return;
    const p = markPhase(c, s);
    const now = Date.now();
    c.count.textContent = String(Math.max(0, s.availableUnits));
    c.bar.max = s.totalUnits;
    c.bar.value = Math.max(0, s.availableUnits);
    if (p === 'upcoming') {
      c.clock.textContent = startsIn(s, now);
    } else if (p === 'live') {
      c.clock.textContent = `Live, ends in ${duration(Date.parse(s.endTime) - now)}`;
    } else {
      c.clock.textContent = p === 'sold-out' ? 'Sold out' : PHASE_WORDS[p];
    }
    if (s.soldOutAt) {
      const after = s.soldOutAt - Date.parse(s.startTime);
      c.soldOut.textContent = `at ${new Date(s.soldOutAt).toLocaleTimeString()}, ${(after / 1000).toFixed(1)} s after the start`;
    } else {
      c.soldOut.textContent = '';
    }
    const buckets = ratePerSecond(s, 60, now);
    c.rate.textContent = `(peak ${Math.max(...buckets)}/s)`;
    draw(c.canvas, buckets);
  }

  async reconcile(id, c) {
    try {
      const [r] = await get(`/api/admin/reconcile?flashSaleId=${id}`);
      c.recon.textContent =
        `Redis sold ${r.redisSold}, MongoDB holds ${r.mongoSold} in ${r.mongoOrders} orders, ` +
        `${r.pendingWriteBehind} waiting in the write-behind: ` +
        (r.consistent ? 'consistent.' : `${r.difference} units not yet recorded.`);
      c.recon.className = `recon ${r.consistent ? 'good' : 'warn'}`;
    } catch (err) {
      c.recon.textContent = failure(err);
    }
  }

  // === Leaderboard ===

  saleOptions(list) {
    const current = this.lbSelect.value;
    const ids = list.map((s) => s.id).join();
    if (this.lbSelect.dataset.ids === ids) return;
    this.lbSelect.dataset.ids = ids;
    this.lbSelect.replaceChildren(
      ...list.map((s) => h('option', { value: s.id, selected: s.id === current }, `${s.productName} · ${time(s.startTime)}`)),
    );
  }

  leaderboardSection() {
    return h('section', { class: 'card', id: 'leaderboard' },
      h('header', {}, h('h3', {}, 'Leaderboard'), this.lbSelect),
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['#', 'Buyer', 'Units', 'First purchase'].map((t) => h('th', {}, t)))),
        this.lbBody),
      h('div', { class: 'pager' },
        h('button', { type: 'button', id: 'lb-prev', onclick: () => this.loadLeaderboard(this.lbOffset - PAGE) }, '← Previous'),
        this.lbInfo,
        h('button', { type: 'button', id: 'lb-next', onclick: () => this.loadLeaderboard(this.lbOffset + PAGE) }, 'Next →'),
      ),
    );
  }

  async loadLeaderboard(offset) {
    const sale = this.lbSelect.value;
    if (!sale) return;
    offset = Math.max(0, offset);
    try {
      const rows = await get(`/api/leaderboard?flashSaleId=${sale}&offset=${offset}&limit=${PAGE}`);
      if (!rows.length && offset > 0) return; // past the end: stay
      this.lbOffset = offset;
      this.lbBody.replaceChildren(
        ...rows.map((r) => h('tr', {},
          h('td', {}, r.rank),
          h('td', {}, r.name ? `${r.name} <${r.email}>` : r.userId),
          h('td', {}, r.totalPurchases),
          h('td', {}, time(r.firstPurchaseAt)))),
      );
      this.lbInfo.textContent = rows.length ? `${offset + 1}–${offset + rows.length}` : 'No buyers yet';
    } catch (err) {
      this.lbInfo.textContent = failure(err);
    }
  }

  // === Fraud and blocklist ===

  fraudSection() {
    return h('section', { class: 'card', id: 'fraud' },
      h('header', {}, h('h3', {}, 'Fraud events'), h('button', { type: 'button', onclick: () => this.loadFraud() }, 'Refresh')),
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['When', 'Rule', 'Action', 'User', 'IP'].map((t) => h('th', {}, t)))),
        this.fraudBody),
    );
  }

  async loadFraud() {
    try {
      const events = await get('/api/fraud/events?limit=20');
      this.fraudBody.replaceChildren(
        ...(events.length
          ? events.map((e) => h('tr', {},
              h('td', {}, time(e.at)),
              h('td', {}, e.rule),
              h('td', {}, e.action),
              h('td', { class: 'mono' }, e.userId || '—'),
              h('td', { class: 'mono' }, e.ip || '—')))
          : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No fraud events.'))]),
      );
    } catch (err) {
      this.fraudBody.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, failure(err))));
    }
  }

  blocklistSection() {
    return h('section', { class: 'card', id: 'blocklist' },
      h('h3', {}, 'Blocklist'),
      h('form', { id: 'block-form', onsubmit: (e) => this.block(e) },
        h('div', { class: 'pair' },
          h('label', {}, 'Type', h('select', { name: 'type' },
            h('option', { value: 'user' }, 'user'),
            h('option', { value: 'ip' }, 'ip'),
            h('option', { value: 'allow' }, 'allow'))),
          h('label', {}, 'TTL (s, optional)', h('input', { name: 'ttl', type: 'number', min: 1 }))),
        h('label', {}, 'User id or IP/network', h('input', { name: 'value', required: true })),
        h('label', {}, 'Reason', h('input', { name: 'reason', maxlength: 200 })),
        h('button', { class: 'primary', type: 'submit' }, 'Add'),
      ),
      this.msg('block'),
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['Type', 'Value', 'Reason', ''].map((t) => h('th', {}, t)))),
        this.blockBody),
    );
  }

  async loadBlocklist() {
    try {
      const entries = await get('/api/admin/blocklist');
      this.blockBody.replaceChildren(
        ...(entries.length
          ? entries.map((b) => h('tr', { 'data-value': b.value },
              h('td', {}, b.type),
              h('td', { class: 'mono' }, b.value),
              h('td', {}, b.reason || ''),
              h('td', {}, h('button', { type: 'button', class: 'remove', onclick: () => this.unblock(b) }, 'Remove'))))
          : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'Nobody is blocked.'))]),
      );
    } catch (err) {
      this.blockBody.replaceChildren(h('tr', {}, h('td', { colspan: 4 }, failure(err))));
    }
  }

  async block(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    const ttl = Number(f.get('ttl'));
    try {
      await post('/api/admin/blocklist', {
        type: f.get('type'),
        value: String(f.get('value')).trim(),
        reason: f.get('reason') || undefined,
        ttlSeconds: ttl > 0 ? ttl : undefined,
      });
      this.say('block', 'good', `Added ${f.get('type')} ${f.get('value')}.`);
      e.target.reset();
    } catch (err) {
      this.say('block', 'bad', failure(err));
    }
    await this.loadBlocklist();
  }

  async unblock(b) {
    const q = new URLSearchParams({ type: b.type, value: b.value });
    try {
      await request('DELETE', `/api/admin/blocklist?${q}`);
      this.say('block', 'good', `Removed ${b.type} ${b.value}.`);
    } catch (err) {
      this.say('block', 'bad', failure(err));
    }
    await this.loadBlocklist();
  }
}

function failure(err) {
  if (!(err instanceof ApiError)) return String(err);
  const field = err.details && err.details.field ? ` (${err.details.field})` : '';
  return `${err.code}: ${err.message}${field}`;
}

/** Bars of units sold per second, newest on the right. */
function draw(canvas, buckets) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(canvas);
  const max = Math.max(1, ...buckets);
  const w = width / buckets.length;
  ctx.fillStyle = css.getPropertyValue('--grid').trim() || '#ddd';
  for (let i = 1; i <= 3; i++) ctx.fillRect(0, Math.round((height * i) / 4), width, 1);
  ctx.fillStyle = css.getPropertyValue('--accent').trim() || '#c0392b';
  buckets.forEach((n, i) => {
    if (!n) return;
    const bh = Math.max(2, (n / max) * (height - 14));
    ctx.fillRect(i * w + 1, height - bh, Math.max(1, w - 2), bh);
  });
  ctx.fillStyle = css.getPropertyValue('--muted').trim() || '#777';
  ctx.font = '10px system-ui, sans-serif';
  ctx.fillText(`${max}/s`, 2, 10);
}
