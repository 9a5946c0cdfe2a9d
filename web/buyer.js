// The buyer page: sale cards (countdown, live stock bar, buy button) and
// the buyer's orders. A click on Buy makes one Idempotency-Key; retries of
// that click (network error, 503) send the same key, so the click buys at
// most once whatever happens to the connection.

import { ApiError, h, money, duration, request, time } from './api.js';
import { SaleBoard, markPhase, startsIn } from './sales.js';

// Attempts of one click when the outcome is unknown (network, 503).
const ATTEMPTS = 3;

export class Buyer {
  constructor(root, live) {
    this.root = root;
    this.cards = new Map();
    this.board = new SaleBoard(live, (id) => this.render(id));
    this.salesEl = h('div', { class: 'grid', id: 'sales' });
    this.ordersBody = h('tbody');
    this.ordersNote = h('p', { class: 'muted', id: 'orders-note' });
    root.replaceChildren(
      h('h2', {}, 'Flash sales'),
      this.salesEl,
      h('h2', {}, 'Your orders'),
      h(
        'table',
        { id: 'orders', class: 'table' },
        h('thead', {}, h('tr', {}, ['Order', 'Product', 'Units', 'Total', 'Placed', 'Status'].map((t) => h('th', {}, t)))),
        this.ordersBody,
      ),
      this.ordersNote,
    );
    this.tick = setInterval(() => this.render(null, true), 250);
    this.poll = setInterval(() => this.board.refresh().catch(() => {}), 15000);
    this.ordersTimer = null;
  }

  async start() {
    await this.board.refresh();
    await this.loadOrders();
  }

  stop() {
    clearInterval(this.tick);
    clearInterval(this.poll);
    clearTimeout(this.ordersTimer);
  }

  onEvent(name, data) {
    this.board.onEvent(name, data);
  }

  /** Updates the cards in place (inputs keep their values). */
  render(changed, clockOnly = false) {
    const list = this.board.list();
    if (!clockOnly) {
      const want = list.map((s) => s.id);
      for (const [id, c] of this.cards) {
        if (!this.board.sales.has(id)) {
          c.el.remove();
          this.cards.delete(id);
        }
      }
      for (const s of list) {
        if (!this.cards.has(s.id)) this.cards.set(s.id, this.card(s));
      }
      const els = want.map((id) => this.cards.get(id).el);
      if (els.some((el, i) => this.salesEl.children[i] !== el)) this.salesEl.replaceChildren(...els);
      if (!list.length) this.salesEl.replaceChildren(h('p', { class: 'muted' }, 'No sales right now.'));
    }
    for (const s of list) this.update(s);
  }

  card(s) {
    const c = {};
    c.badge = h('span', { class: 'badge' });
    c.clock = h('span', { class: 'clock' });
    c.bar = h('progress', { max: s.totalUnits, value: s.availableUnits, class: 'stock-bar' });
    c.count = h('span', { class: 'stock-count' });
    c.qty = h('input', { type: 'number', min: 1, value: 1, class: 'qty', 'aria-label': 'Quantity' });
    c.buy = h('button', { class: 'buy primary', type: 'submit' }, 'Buy');
    c.outcome = h('p', { class: 'outcome', role: 'status' });
    c.form = h(
      'form',
      { class: 'buy-form', onsubmit: (e) => { e.preventDefault(); this.buy(s.id, c); } },
      h('label', {}, 'Qty ', c.qty),
      c.buy,
    );
    c.el = h(
      'article',
      { class: 'card sale', 'data-sale': s.id },
      h('header', {}, h('h3', {}, s.productName), c.badge),
      h('p', { class: 'price' }, h('strong', {}, money(s.salePrice)), ' ', h('s', {}, money(s.price)), ` −${s.discount}%`),
      c.clock,
      h('div', { class: 'stock' }, c.bar, c.count),
      h('p', { class: 'muted limits' }, `Up to ${s.maxPerTransaction} per purchase, ${s.maxPerUser} per buyer`),
      c.form,
      c.outcome,
    );
    return c;
  }

  update(s) {
    const c = this.cards.get(s.id);
    if (!c) return;
    const p = markPhase(c, s);
    const now = Date.now();
    if (p === 'upcoming') {
      c.clock.textContent = startsIn(s, now);
    } else if (p === 'live') {
      c.clock.textContent = `Ends in ${duration(Date.parse(s.endTime) - now)}`;
    } else if (p === 'sold-out') {
      c.clock.textContent = 'All units sold';
    } else {
      c.clock.textContent = `Ended at ${time(s.endTime)}`;
    }
    c.bar.max = s.totalUnits;
    c.bar.value = Math.max(0, s.availableUnits);
    c.count.textContent = `${Math.max(0, s.availableUnits)} of ${s.totalUnits} left`;
    const max = Math.max(1, Math.min(s.maxPerTransaction, s.maxPerUser, Math.max(1, s.availableUnits)));
    c.qty.max = String(max);
    if (Number(c.qty.value) > max) c.qty.value = String(max);
    c.buy.disabled = c.busy || p !== 'live';
    c.qty.disabled = p !== 'live';
  }

  async buy(id, c) {
    if (c.busy) return; // a double click while in flight buys once
    const s = this.board.sales.get(id);
    const qty = Math.floor(Number(c.qty.value));
    if (!(qty >= 1 && qty <= Number(c.qty.max))) {
      this.say(c, 'bad', `Choose 1 to ${c.qty.max} units.`);
      return;
    }
    const key = crypto.randomUUID();
    c.busy = true;
    c.buy.disabled = true;
    c.buy.textContent = 'Buying…';
    this.say(c, '', 'Placing your order…');
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await request('POST', '/api/purchase-product', {
            body: { flashSaleId: id, quantity: qty },
            headers: { 'idempotency-key': key },
          });
          const o = r.data;
          const again = r.headers.get('idempotent-replayed') === 'true' ? ' (already placed)' : '';
          this.say(c, 'good', `Order ${o.id}: ${o.quantity} × ${money(o.unitPrice)}${again}.`);
          if (typeof o.remainingUnits === 'number') this.board.stock(s, Math.min(s.availableUnits, o.remainingUnits));
          break;
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          const unknown = e.status === 0 || e.code === 'UNAVAILABLE';
          if (unknown && attempt < ATTEMPTS) {
            const wait = Math.min(e.retryAfter ?? 1, 5);
            this.say(c, '', `No answer yet, retrying the same order in ${wait} s…`);
            await new Promise((r) => setTimeout(r, wait * 1000));
            continue;
          }
          this.say(c, 'bad', words(e));
          break;
        }
      }
    } finally {
      c.busy = false;
      c.buy.textContent = 'Buy';
      this.update(s);
      this.loadOrders();
    }
  }

  say(c, kind, text) {
    c.outcome.textContent = text;
    c.outcome.className = `outcome ${kind}`;
  }

  async loadOrders() {
    clearTimeout(this.ordersTimer);
    let r;
    try {
      r = await request('GET', '/api/orders?limit=20');
    } catch {
      this.ordersTimer = setTimeout(() => this.loadOrders(), 5000);
      return;
    }
    const names = this.board.products;
    const sales = this.board.sales;
    const rows = r.data.map((o) => {
      const s = sales.get(o.flashSaleId);
      const product = s ? s.productName : (names.get(o.productId) || {}).name || o.flashSaleId.slice(-6);
      return h(
        'tr',
        { 'data-order': o.id, 'data-status': o.status },
        h('td', { class: 'mono' }, o.id.slice(-10)),
        h('td', {}, product),
        h('td', {}, o.quantity),
        h('td', {}, money(o.totalPrice)),
        h('td', {}, time(o.purchasedAt)),
        h('td', {}, h('span', { class: `badge ${o.status}` }, o.status === 'pending' ? 'Pending' : 'Recorded')),
      );
    });
    this.ordersBody.replaceChildren(...rows);
    const partial = r.headers.get('x-orders-recorded') === 'unavailable';
    this.ordersNote.textContent = !rows.length
      ? 'No orders yet.'
      : partial
        ? 'Showing orders still being recorded; older orders are temporarily unavailable.'
        : 'Pending: accepted and being recorded. Recorded: stored for good.';
    // Pending orders become recorded within moments: look again.
    if (partial || r.data.some((o) => o.status === 'pending')) {
      this.ordersTimer = setTimeout(() => this.loadOrders(), 2000);
    }
  }
}

/** A refused purchase in words. */
export function words(e) {
  const d = e.details || {};
  switch (e.code) {
    case 'SOLD_OUT':
      return 'Sold out: every unit is gone.';
    case 'INSUFFICIENT_STOCK':
      return `Only ${d.availableUnits ?? 'a few'} left: choose fewer units.`;
    case 'USER_PURCHASE_LIMIT_REACHED':
      return d.remainingAllowance > 0
        ? `Your limit: you may buy ${d.remainingAllowance} more.`
        : 'Your limit reached: you have bought as many as allowed.';
    case 'TRANSACTION_LIMIT_EXCEEDED':
      return `At most ${d.maxPerTransaction ?? 'a few'} per purchase.`;
    case 'RATE_LIMITED':
      return `Too many tries: try again in ${e.retryAfter ?? 1} s.`;
    case 'UNAVAILABLE':
      return `The shop is busy: try again in ${e.retryAfter ?? 1} s.`;
    case 'NETWORK':
      return 'No connection: try again in a moment.';
    case 'FLASH_SALE_NOT_STARTED':
      return 'Not started yet.';
    case 'FLASH_SALE_ENDED':
      return d.reason === 'cancelled' ? 'This sale was cancelled.' : 'This sale has ended.';
    case 'BLOCKED':
      return 'This purchase was refused.';
    case 'IDEMPOTENCY_KEY_REUSED':
      return 'This order was already placed with another quantity.';
    default:
      return e.message || 'Something went wrong.';
  }
}
