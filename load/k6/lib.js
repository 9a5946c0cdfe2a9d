// Shared helpers of the flashsale k6 scripts (purchase-storm.js, sold-out.js,
// ws-watchers.js). Not a test by itself.
//
// Environment read here (each script documents its own on top):
//   BASE_URL         http://127.0.0.1:5050  the service or the load balancer in front
//   ADMIN_EMAIL      admin@flashsale.local  the admin the server was started with
//   ADMIN_PASSWORD   (required)             its password
//   BUYER_PASSWORD   k6-load-test-password  password of the buyers setup() signs up
//   BUYER_PREFIX     k6-<run id>            buyers are <prefix>-<i>@load.example.com;
//                                           set it to reuse the buyers of an earlier run
//                                           (sign-up answers 409 and they are signed in)
//   SIGNUP_BATCH     10                     sign-ups / sign-ins sent at once by setup()
//   SALE_MINUTES     60                     how long a created sale stays open
//
// Every request made here is tagged with a `name` (signin, signup, product,
// sale, sale-get, purchase, ...), so thresholds can select one kind, e.g.
// `http_req_duration{name:purchase}`.

import http from 'k6/http';
import { fail, sleep } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:5050').replace(/\/+$/, '');

/** The WebSocket endpoint on the same host: http -> ws, https -> wss. */
export const WS_URL = BASE_URL.replace(/^http/, 'ws') + '/ws';

const ADMIN_EMAIL = __ENV.ADMIN_EMAIL || 'admin@flashsale.local';
const BUYER_PASSWORD = __ENV.BUYER_PASSWORD || 'k6-load-test-password';
const SIGNUP_BATCH = envInt('SIGNUP_BATCH', 10);
const SALE_MINUTES = envInt('SALE_MINUTES', 60);

/** Purchase answers that are not failures for http_req_failed: refusals are answers. */
const PURCHASE_STATUSES = http.expectedStatuses(201, 403, 409, 429);

/**
 * Documented purchase refusals, by status: anything else (another code, a
 * 5xx, a transport error with status 0) is an unexpected answer.
 */
const PURCHASE_REFUSALS = {
  409: { SOLD_OUT: 'sold_out', INSUFFICIENT_STOCK: 'insufficient_stock' },
  403: { USER_PURCHASE_LIMIT_REACHED: 'user_limit' },
  429: { RATE_LIMITED: 'rate_limited' },
};

/** An integer from the environment, or `def` when unset; a bad value stops the test. */
export function envInt(name, def) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return def;
  }
  const n = Number(raw);
  if (!Number.isInteger(n)) {
    throw new Error(`${name} must be an integer, got "${raw}"`);
  }
  return n;
}

/** A string from the environment, or `def` when unset. */
export function envStr(name, def) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? def : raw;
}

/** True when the variable is 1, true or yes. */
export function envBool(name, def) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return def;
  }
  return ['1', 'true', 'yes'].indexOf(String(raw).toLowerCase()) >= 0;
}

/** A short id for this run: names its product, buyers and Idempotency-Keys. */
// The request scenario of the storm scripts: an open model (RATE requests
// started per second, constant-arrival-rate) or, with rate 0, a closed one
// (VUS looping for DURATION).
export function rateScenario(rate, vus, maxVus, duration) {
  return rate > 0
    ? {
        executor: 'constant-arrival-rate',
        rate: rate,
        timeUnit: '1s',
        duration: duration,
        preAllocatedVUs: vus,
        maxVUs: Math.max(maxVus, vus),
      }
    : { executor: 'constant-vus', vus: vus, duration: duration };
}

export function newRunId() {
  return Date.now().toString(36) + Math.floor(Math.random() * 0x7fffffff).toString(36);
}

/**
 * An Idempotency-Key unique per attempt: the run, the VU and its iteration
 * (visible ASCII, far below the 128-character limit).
 */
export function idempotencyKey(runId) {
  return `k6-${runId}-${__VU}-${__ITER}`;
}

/** The `error.code` of a JSON error body (`{"error":{"code":...}}`), or '' for anything else. */
export function errorCode(res) {
  if (!res || typeof res.body !== 'string' || res.body.length === 0) {
    return '';
  }
  try {
    const v = JSON.parse(res.body);
    return v && v.error && typeof v.error.code === 'string' ? v.error.code : '';
  } catch (e) {
    return '';
  }
}

/** The parsed JSON body, or null. */
export function jsonBody(res) {
  if (!res || typeof res.body !== 'string') {
    return null;
  }
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

/** Request params with a JSON content type, an optional bearer token and a `name` tag. */
export function params(token, name, extraHeaders) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (extraHeaders) {
    for (const k of Object.keys(extraHeaders)) {
      headers[k] = extraHeaders[k];
    }
  }
  return { headers: headers, tags: { name: name } };
}

/** Stops the test with the request and its answer in the message. */
function failed(what, res) {
  const code = errorCode(res);
  let hint = '';
  if (res && res.status === 429) {
    hint = ' (rate limited: start the server with IP_ALLOW=127.0.0.1/32, see load/k6/README.md)';
  } else if (res && res.status === 0) {
    hint = ` (no answer from ${BASE_URL}: ${res.error})`;
  }
  fail(`${what}: answered ${res ? res.status : 'nothing'} ${code}${hint}`);
}

/** Signs in and returns the access token, or stops the test. */
export function signIn(email, password) {
  const res = http.post(
    `${BASE_URL}/api/signin`,
    JSON.stringify({ email: email, password: password }),
    params(null, 'signin'),
  );
  const body = res.status === 200 ? jsonBody(res) : null;
  if (!body || typeof body.accessToken !== 'string') {
    failed(`sign-in of ${email}`, res);
  }
  return body.accessToken;
}

/** Signs the admin in (ADMIN_EMAIL / ADMIN_PASSWORD) and returns its token. */
export function signInAdmin() {
  const password = __ENV.ADMIN_PASSWORD;
  if (!password) {
    fail('ADMIN_PASSWORD is not set: pass -e ADMIN_PASSWORD=... (and -e ADMIN_EMAIL=... unless admin@flashsale.local)');
  }
  return signIn(ADMIN_EMAIL, password);
}

/** Creates a product and returns its id. */
export function createProduct(adminToken, name) {
  const res = http.post(
    `${BASE_URL}/api/products`,
    JSON.stringify({ name: name, description: 'created by a k6 load test', price: 100.0 }),
    params(adminToken, 'product'),
  );
  const body = res.status === 201 ? jsonBody(res) : null;
  if (!body || typeof body.id !== 'string') {
    failed('POST /api/products', res);
  }
  return body.id;
}

/**
 * Creates a product and a flash sale of it that is open now (its start a
 * minute ago, so clock skew between this machine and Redis cannot make it
 * "not started") and ends after SALE_MINUTES, then waits until the service
 * reports it active. Returns the sale as the API answered it.
 *
 * opts: runId, label, totalUnits, maxPerUser, maxPerTransaction,
 * maxAccountsPerIp (default 0: every buyer comes from one address), discount.
 */
export function createSale(adminToken, opts) {
  const productId = createProduct(adminToken, `k6 ${opts.label || 'sale'} ${opts.runId}`);
  const now = Date.now();
  const body = {
    productId: productId,
    startTime: new Date(now - 60 * 1000).toISOString(),
    endTime: new Date(now + SALE_MINUTES * 60 * 1000).toISOString(),
    discount: opts.discount === undefined ? 10 : opts.discount,
    totalUnits: opts.totalUnits,
    maxPerUser: opts.maxPerUser,
    maxPerTransaction: opts.maxPerTransaction,
    maxAccountsPerIp: opts.maxAccountsPerIp === undefined ? 0 : opts.maxAccountsPerIp,
  };
  const res = http.post(`${BASE_URL}/api/flash-sales`, JSON.stringify(body), params(adminToken, 'sale'));
  const sale = res.status === 201 ? jsonBody(res) : null;
  if (!sale || typeof sale.id !== 'string') {
    failed(`POST /api/flash-sales ${JSON.stringify(body)}`, res);
  }
  waitForActive(adminToken, sale.id);
  return sale;
}

/** Polls the sale until its status is active (the scheduler moves it within a tick). */
export function waitForActive(token, saleId) {
  const deadline = Date.now() + 15000;
  let last = null;
  while (Date.now() < deadline) {
    last = http.get(`${BASE_URL}/api/flash-sales/${saleId}`, params(token, 'sale-get'));
    const sale = last.status === 200 ? jsonBody(last) : null;
    if (sale && sale.status === 'active') {
      return sale;
    }
    sleep(0.25);
  }
  failed(`sale ${saleId} did not become active within 15 s`, last);
  return null;
}

/** Reads a sale (any user's token). */
export function getSale(token, saleId) {
  const res = http.get(`${BASE_URL}/api/flash-sales/${saleId}`, params(token, 'sale-get'));
  return res.status === 200 ? jsonBody(res) : null;
}

/** Cancels a sale (admin); used by teardown() so long runs leave no open sale behind. */
export function cancelSale(adminToken, saleId) {
  const res = http.post(`${BASE_URL}/api/flash-sales/${saleId}/cancel`, null, params(adminToken, 'sale-cancel'));
  return res.status;
}

/**
 * Signs up `n` customers (<prefix>-<i>@load.example.com; 409
 * EMAIL_ALREADY_EXISTS is fine, they are reused) and signs them in,
 * SIGNUP_BATCH requests at a time. Returns their access tokens.
 *
 * Each sign-up and sign-in is one PBKDF2 derivation on the server
 * (PASSWORD_ITERATIONS, HASH_CONCURRENCY at once): hundreds of buyers take a
 * while, hence the scripts' setupTimeout.
 */
export function createBuyers(n, prefix) {
  const emails = [];
  for (let i = 0; i < n; i++) {
    emails.push(`${prefix}-${i}@load.example.com`);
  }
  for (let i = 0; i < n; i += SIGNUP_BATCH) {
    const batch = emails.slice(i, i + SIGNUP_BATCH).map(function (email, j) {
      return {
        method: 'POST',
        url: `${BASE_URL}/api/signup`,
        body: JSON.stringify({ name: `k6 buyer ${i + j}`, email: email, password: BUYER_PASSWORD }),
        params: params(null, 'signup'),
      };
    });
    const answers = http.batch(batch);
    for (let j = 0; j < answers.length; j++) {
      const res = answers[j];
      if (res.status !== 201 && !(res.status === 409 && errorCode(res) === 'EMAIL_ALREADY_EXISTS')) {
        failed(`sign-up of ${emails[i + j]}`, res);
      }
    }
  }
  const tokens = [];
  for (let i = 0; i < n; i += SIGNUP_BATCH) {
    const chunk = emails.slice(i, i + SIGNUP_BATCH);
    const answers = http.batch(
      chunk.map(function (email) {
        return {
          method: 'POST',
          url: `${BASE_URL}/api/signin`,
          body: JSON.stringify({ email: email, password: BUYER_PASSWORD }),
          params: params(null, 'signin'),
        };
      }),
    );
    for (let j = 0; j < answers.length; j++) {
      const body = answers[j].status === 200 ? jsonBody(answers[j]) : null;
      if (!body || typeof body.accessToken !== 'string') {
        failed(`sign-in of ${chunk[j]}`, answers[j]);
      }
      tokens.push(body.accessToken);
    }
  }
  return tokens;
}

/** The buyers' e-mail prefix: BUYER_PREFIX, or one new per run. */
export function buyerPrefix(runId) {
  return envStr('BUYER_PREFIX', `k6-${runId}`);
}

/**
 * POST /api/purchase-product. `key` is the Idempotency-Key (omitted when
 * falsy). Tagged name=purchase unless `name` says otherwise.
 */
export function purchase(token, saleId, quantity, key, name) {
  const extra = key ? { 'Idempotency-Key': key } : null;
  const p = params(token, name || 'purchase', extra);
  p.responseCallback = PURCHASE_STATUSES;
  return http.post(
    `${BASE_URL}/api/purchase-product`,
    JSON.stringify({ flashSaleId: saleId, quantity: quantity }),
    p,
  );
}

/**
 * Classifies a purchase answer: { outcome, code, expected }. outcome is
 * 'created' (201), one of the documented refusals ('sold_out',
 * 'insufficient_stock', 'user_limit', 'rate_limited') or 'unexpected'.
 */
export function classifyPurchase(res) {
  const status = res ? res.status : 0;
  if (status === 201) {
    return { outcome: 'created', code: '', expected: true };
  }
  const code = errorCode(res);
  const known = PURCHASE_REFUSALS[status];
  if (known && Object.prototype.hasOwnProperty.call(known, code)) {
    return { outcome: known[code], code: code, expected: true };
  }
  return { outcome: 'unexpected', code: code, expected: false };
}
