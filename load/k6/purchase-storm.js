// purchase-storm.js: many buyers buying one unit at a time from a sale too
// big to sell out, at a fixed arrival rate (open model): measures the
// purchase path (auth, abuse rules, one Lua script in Redis, 201).
//
// setup() signs the admin in, creates a product and a sale of UNITS units
// (maxPerUser MAX_PER_USER, maxPerTransaction 1, maxAccountsPerIp 0) and signs
// up and in BUYERS customers. Each iteration is one
// POST /api/purchase-product {flashSaleId, quantity: 1} with an
// Idempotency-Key unique per attempt, as buyer (__VU - 1) % BUYERS.
// teardown() prints the units sold and cancels the sale (KEEP_SALE=1 keeps it).
//
// Run (server settings for a one-box run: load/k6/README.md):
//   k6 run -e BASE_URL=http://127.0.0.1:5050 -e ADMIN_EMAIL=admin@flashsale.local \
//          -e ADMIN_PASSWORD=... load/k6/purchase-storm.js
//   k6 run -e ADMIN_PASSWORD=... -e RATE=5000 -e VUS=400 -e DURATION=1m load/k6/purchase-storm.js
//
// Parameters (-e NAME=value), with defaults:
//   BASE_URL          http://127.0.0.1:5050
//   ADMIN_EMAIL       admin@flashsale.local
//   ADMIN_PASSWORD    (required)
//   RATE              1000      purchases started per second (constant-arrival-rate);
//                               0: closed model instead, VUS looping for DURATION
//   VUS               200       VUs allocated up front (the concurrency ceiling of the open model)
//   MAX_VUS           VUS       VUs k6 may add when answers slow down
//   DURATION          30s       length of the storm
//   UNITS             10000000  units of the sale (the API's maximum; it does not sell out)
//   BUYERS            200       customers signed up by setup()
//   MAX_PER_USER      1000000   the sale's maxPerUser (the API's maximum), so no buyer hits it
//   PURCHASE_P99_MS   50        threshold on the p99 of the purchase requests
//   SETUP_TIMEOUT     10m       sign-ups cost one PBKDF2 derivation each on the server
//   KEEP_SALE         0         1: leave the sale open after the run
//   plus BUYER_PASSWORD, BUYER_PREFIX, SIGNUP_BATCH, SALE_MINUTES (see lib.js)
//
// Thresholds (k6 exits non-zero when one fails):
//   http_req_duration{name:purchase}  p(99) < PURCHASE_P99_MS
//   unexpected_status                 count == 0: every answer is 201 or a documented
//                                     refusal (409 SOLD_OUT / INSUFFICIENT_STOCK,
//                                     403 USER_PURCHASE_LIMIT_REACHED, 429 RATE_LIMITED)
//   checks                            rate > 0.99
// Per-outcome counters (no threshold): purchase_created, purchase_sold_out,
// purchase_insufficient_stock, purchase_user_limit, purchase_rate_limited.
// Many purchase_rate_limited means the server's per-user limits are lower
// than RATE / BUYERS (RATE_PURCHASE_PER_USER, PURCHASE_ATTEMPTS_PER_WINDOW).

import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import {
  rateScenario,
  buyerPrefix,
  cancelSale,
  classifyPurchase,
  createBuyers,
  createSale,
  envBool,
  envInt,
  envStr,
  getSale,
  idempotencyKey,
  newRunId,
  purchase,
  signInAdmin,
} from './lib.js';

const RATE = envInt('RATE', 1000);
const VUS = envInt('VUS', 200);
const MAX_VUS = envInt('MAX_VUS', VUS);
const DURATION = envStr('DURATION', '30s');
const UNITS = envInt('UNITS', 10000000);
const BUYERS = envInt('BUYERS', 200);
const MAX_PER_USER = envInt('MAX_PER_USER', 1000000);
const PURCHASE_P99_MS = envInt('PURCHASE_P99_MS', 50);

const unexpectedStatus = new Counter('unexpected_status');
const outcomes = {
  created: new Counter('purchase_created'),
  sold_out: new Counter('purchase_sold_out'),
  insufficient_stock: new Counter('purchase_insufficient_stock'),
  user_limit: new Counter('purchase_user_limit'),
  rate_limited: new Counter('purchase_rate_limited'),
};
const accepted = new Rate('purchase_accepted');

const storm = rateScenario(RATE, VUS, MAX_VUS, DURATION);

export const options = {
  setupTimeout: envStr('SETUP_TIMEOUT', '10m'),
  teardownTimeout: '1m',
  scenarios: { storm: storm },
  thresholds: {
    'http_req_duration{name:purchase}': [`p(99)<${PURCHASE_P99_MS}`],
    unexpected_status: ['count==0'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

export function setup() {
  const runId = newRunId();
  const admin = signInAdmin();
  const sale = createSale(admin, {
    runId: runId,
    label: 'purchase-storm',
    totalUnits: UNITS,
    maxPerUser: MAX_PER_USER,
    maxPerTransaction: 1,
    maxAccountsPerIp: 0,
  });
  const tokens = createBuyers(BUYERS, buyerPrefix(runId));
  console.log(`purchase-storm: sale ${sale.id} (${UNITS} units), ${tokens.length} buyers`);
  return { runId: runId, saleId: sale.id, admin: admin, tokens: tokens };
}

export default function (data) {
  const token = data.tokens[(__VU - 1) % data.tokens.length];
  const res = purchase(token, data.saleId, 1, idempotencyKey(data.runId));
  const c = classifyPurchase(res);
  if (c.expected) {
    outcomes[c.outcome].add(1);
  } else {
    unexpectedStatus.add(1, { status: String(res.status), code: c.code || 'none' });
  }
  accepted.add(c.outcome === 'created');
  check(res, {
    'purchase: 201 or a documented refusal': function () {
      return c.expected;
    },
  });
}

export function teardown(data) {
  const sale = getSale(data.admin, data.saleId);
  if (sale) {
    console.log(
      `purchase-storm: sale ${data.saleId}: ${sale.totalUnits - sale.availableUnits} units sold, ${sale.availableUnits} left`,
    );
  }
  if (!envBool('KEEP_SALE', false)) {
    cancelSale(data.admin, data.saleId);
  }
}
