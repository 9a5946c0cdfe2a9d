// The console's access to the service: the session (token in
// sessionStorage, so each tab signs in on its own), JSON requests with the
// stable error codes, and the live WebSocket (one-use ticket, joins, and
// reconnection with a fresh ticket).

const KEY = 'flashsale.session';

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || 'null');
    } catch {
      return null;
    }
  },
  set(s) {
    sessionStorage.setItem(KEY, JSON.stringify(s));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** A refused request: HTTP status, the error code and its details. */
export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter;
  }
}

/** Seconds from a Retry-After header (seconds or an HTTP date), or null. */
export function retryAfterSecs(headers) {
  const v = headers.get('retry-after');
  if (!v) return null;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, Math.ceil(n));
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * One request. Resolves with `{data, headers, status}` on 2xx, rejects with
 * an ApiError otherwise (status 0 when the network failed).
 */
export async function request(method, path, { body, headers = {} } = {}) {
  const s = session.get();
  const h = { accept: 'application/json', ...headers };
  if (s && s.token) h.authorization = `Bearer ${s.token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `network error: ${e.message}`, {}, null);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && s && path !== '/api/signin') {
      window.dispatchEvent(new CustomEvent('flashsale:unauthorized'));
    }
    throw new ApiError(
      res.status,
      err.code || `HTTP_${res.status}`,
      err.message || res.statusText,
      err.details,
      retryAfterSecs(res.headers),
    );
  }
  return { data, headers: res.headers, status: res.status };
}

export const get = (path) => request('GET', path).then((r) => r.data);
export const post = (path, body, headers) => request('POST', path, { body, headers });

/**
 * The live connection: `/ws?ticket=…` with a ticket from POST /api/ws-ticket,
 * the rooms it should be in (joined again after a reconnect), and every
 * server event passed to `onEvent(name, data)`. `onState(word)` hears
 * "connecting", "live" and "offline".
 */
export class Live {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.rooms = new Set();
    this.ws = null;
    this.stopped = false;
    this.backoff = 500;
    this.timer = null;
  }

  async start() {
    if (this.stopped || this.ws) return;
    this.onState('connecting');
    let ticket;
    try {
      ticket = (await post('/api/ws-ticket')).data.ticket;
    } catch (e) {
      if (e.status === 401) return; // signed out: the app handles it
      this.retry();
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.backoff = 500;
      this.onState('live');
      for (const id of this.rooms) this.send('joinFlashSale', id);
    });
    ws.addEventListener('message', (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg && typeof msg.event === 'string') this.onEvent(msg.event, msg.data || {});
    });
    ws.addEventListener('close', () => {
      this.ws = null;
      this.onState('offline');
      this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 10000);
  }

  send(event, flashSaleId) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event, data: { flashSaleId } }));
    }
  }

  join(id) {
    if (this.rooms.has(id)) return;
    this.rooms.add(id);
    this.send('joinFlashSale', id);
  }

  leave(id) {
    if (!this.rooms.delete(id)) return;
    this.send('leaveFlashSale', id);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}

/** `h('div', {class: 'x'}, child, 'text')`: elements without innerHTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const money = (n) =>
  new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(n);

/** `1h 02m 05s`, `02m 05s`, `5s`. */
export function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const p = (n) => String(n).padStart(2, '0');
  if (hh) return `${hh}h ${p(mm)}m ${p(ss)}s`;
  if (mm) return `${mm}m ${p(ss)}s`;
  return `${ss}s`;
}

export const time = (iso) => new Date(iso).toLocaleTimeString();
