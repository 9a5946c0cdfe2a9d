// The sales both pages show: the list from GET /api/flash-sales (live,
// upcoming and the last few ended), product names, and their live state
// from the WebSocket (snapshot on join, stockUpdate, started, ended). Every
// stock change is kept with its time, for the admin's purchases-per-second
// chart and the sell-out time.

import { duration, get } from './api.js';

// The server allows 20 rooms per socket; leave some head-room.
const MAX_ROOMS = 16;

export class SaleBoard {
  constructor(live, onChange) {
    this.live = live;
    this.onChange = onChange;
    this.sales = new Map();
    this.products = new Map();
  }

  async refresh() {
    const [products, active, pending, ended] = await Promise.all([
      get('/api/products?limit=1000'),
      get('/api/flash-sales?status=active&limit=10'),
      get('/api/flash-sales?status=pending&limit=10'),
      get('/api/flash-sales?status=ended&limit=4'),
    ]);
    for (const p of products) this.products.set(p.id, p);
    const seen = new Set();
    for (const s of [...active, ...pending, ...ended].slice(0, MAX_ROOMS)) {
      seen.add(s.id);
      const old = this.sales.get(s.id);
      if (old) {
        // The socket is fresher about stock and status than a list read.
        old.endTime = s.endTime;
        if (old.status === 'pending' && s.status !== 'pending') old.status = s.status;
        if (s.status === 'ended' || s.status === 'cancelled') {
          old.status = s.status;
          old.endReason = old.endReason || s.endReason;
        }
        old.availableUnits = Math.min(old.availableUnits, s.availableUnits);
      } else {
        this.sales.set(s.id, {
          ...s,
          productName: (this.products.get(s.productId) || {}).name || 'Product',
          samples: [{ t: Date.now(), available: s.availableUnits }],
          soldOutAt: null,
        });
      }
      this.live.join(s.id);
    }
    for (const id of [...this.sales.keys()]) {
      if (!seen.has(id)) {
        this.sales.delete(id);
        this.live.leave(id);
      }
    }
    this.onChange(null);
  }

  /** Sales in display order: live, upcoming (soonest first), then ended. */
  list() {
    const rank = (s) => ({ live: 0, upcoming: 1 })[phase(s)] ?? 2;
    return [...this.sales.values()].sort(
      (a, b) =>
        rank(a) - rank(b) ||
        (rank(a) === 1
          ? Date.parse(a.startTime) - Date.parse(b.startTime)
          : Date.parse(b.startTime) - Date.parse(a.startTime)),
    );
  }

  onEvent(name, d) {
    const s = this.sales.get(d.flashSaleId);
    if (!s) return;
    switch (name) {
      case 'flashSaleStatus':
        s.status = d.status;
        s.startTime = d.startTime || s.startTime;
        s.endTime = d.endTime || s.endTime;
        this.stock(s, d.availableUnits);
        break;
      case 'stockUpdate':
        this.stock(s, d.availableUnits);
        break;
      case 'flashSaleStarted':
        if (s.status === 'pending') s.status = 'active';
        break;
      case 'flashSaleEnded':
        s.status = d.reason === 'cancelled' ? 'cancelled' : 'ended';
        s.endReason = d.reason;
        if (d.reason === 'sold-out') this.stock(s, 0);
        break;
      default:
        return;
    }
    this.onChange(s.id);
  }

  stock(s, available) {
    if (typeof available !== 'number') return;
    const now = Date.now();
    if (available !== s.availableUnits) s.samples.push({ t: now, available });
    if (s.samples.length > 2000) s.samples.splice(0, s.samples.length - 2000);
    s.availableUnits = available;
    if (available === 0 && s.soldOutAt === null && s.samples.length > 1) s.soldOutAt = now;
  }
}

/** What a buyer should be told: upcoming, live, sold-out, ended or cancelled. */
export function phase(s, now = Date.now()) {
  if (s.status === 'cancelled' || s.endReason === 'cancelled') return 'cancelled';
  if (s.availableUnits <= 0 && s.status !== 'pending') return 'sold-out';
  if (s.endReason === 'sold-out') return 'sold-out';
  if (s.status === 'ended' || now >= Date.parse(s.endTime)) return 'ended';
  if (s.status === 'pending') return 'upcoming';
  return 'live';
}

export const PHASE_WORDS = {
  upcoming: 'Upcoming',
  live: 'Live',
  'sold-out': 'Sold out',
  ended: 'Ended',
  cancelled: 'Cancelled',
};

/** Units sold per second over the last `secs` seconds, oldest first. */
export function ratePerSecond(s, secs = 60, now = Date.now()) {
  const buckets = new Array(secs).fill(0);
  for (let i = 1; i < s.samples.length; i++) {
    const sold = s.samples[i - 1].available - s.samples[i].available;
    if (sold <= 0) continue;
    const age = Math.floor((now - s.samples[i].t) / 1000);
    if (age >= 0 && age < secs) buckets[secs - 1 - age] += sold;
  }
  return buckets;
}

/** Marks a sale's card (`c.el`, `c.badge`) with its phase, and returns it. */
export function markPhase(c, s, now = Date.now()) {
  const p = phase(s, now);
  c.el.dataset.phase = p;
  c.badge.textContent = PHASE_WORDS[p];
  c.badge.className = `badge ${p}`;
  return p;
}

/** The countdown of a sale that has not started yet. */
export function startsIn(s, now = Date.now()) {
  const left = Date.parse(s.startTime) - now;
  return left > 0 ? `Starts in ${duration(left)}` : 'Starting…';
}
