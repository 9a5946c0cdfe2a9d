// sold-out.js: the rejection path. In a real flash sale most requests arrive
// after the stock is gone; each must be answered 409 SOLD_OUT, fast.
//
// setup() signs the admin in, creates a small sale (UNITS units, maxPerUser
// and maxPerTransaction UNITS, maxAccountsPerIp 0), signs up and in BUYERS
// customers, buys the whole stock in one purchase as the first buyer, and
// checks that one more purchase is refused with 409 SOLD_OUT. Then VUs hammer
// POST /api/purchase-product {flashSaleId, quantity: 1} as buyer
// (__VU - 1) % BUYERS at a fixed arrival rate (open model).
//
// By default the hammering sends no Idempotency-Key: that is the path the
// service answers from memory once it knows the sale is sold out (no Redis
// call, no rate limit). IDEMPOTENCY_KEY=1 sends a fresh key per attempt,
// which goes through the abuse rules and the Redis script every time (then
// the per-user limits apply: see load/k6/README.md).
//
// Run:
//   k6 run -e BASE_URL=http://127.0.0.1:5050 -e ADMIN_EMAIL=admin@flashsale.local \
//          -e ADMIN_PASSWORD=... load/k6/sold-out.js
//
// Parameters (-e NAME=value), with defaults:
//   BASE_URL          http://127.0.0.1:5050
//   ADMIN_EMAIL       admin@flashsale.local
//   ADMIN_PASSWORD    (required)
//   RATE              2000    purchases started per second (constant-arrival-rate);
//                             0: closed model instead, VUS looping for DURATION
//   VUS               100     VUs allocated up front
//   MAX_VUS           VUS     VUs k6 may add when answers slow down
//   DURATION          30s     length of the run
//   UNITS             100     units of the sale, bought out by setup() (at most 1000000)
//   BUYERS            20      customers signed up by setup()
//   IDEMPOTENCY_KEY   0       1: send a unique Idempotency-Key per attempt
//   SOLD_OUT_P99_MS   20      threshold on the p99 of the purchase requests
//   SETUP_TIMEOUT     10m
//   plus BUYER_PASSWORD, BUYER_PREFIX, SIGNUP_BATCH, SALE_MINUTES (see lib.js)
//
// Thresholds:
//   http_req_duration{name:purchase}  p(99) < SOLD_OUT_P99_MS
//   unexpected_status                 count == 0: every answer is 409 with code SOLD_OUT
//   checks                            rate > 0.99

import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';
import {
  rateScenario,
  buyerPrefix,
  createBuyers,
  createSale,
  envBool,
  envInt,
  envStr,
  errorCode,
  idempotencyKey,
  jsonBody,
  newRunId,
  purchase,
  signInAdmin,
} from './lib.js';

const RATE = envInt('RATE', 2000);
const VUS = envInt('VUS', 100);
const MAX_VUS = envInt('MAX_VUS', VUS);
const DURATION = envStr('DURATION', '30s');
const UNITS = envInt('UNITS', 100);
const BUYERS = envInt('BUYERS', 20);
const USE_KEY = envBool('IDEMPOTENCY_KEY', false);
const SOLD_OUT_P99_MS = envInt('SOLD_OUT_P99_MS', 20);

if (UNITS < 1 || UNITS > 1000000) {
  throw new Error('UNITS must be from 1 to 1000000 (one purchase buys the whole stock)');
}

const unexpectedStatus = new Counter('unexpected_status');
const soldOut = new Counter('purchase_sold_out');

const hammer = rateScenario(RATE, VUS, MAX_VUS, DURATION);

export const options = {
  setupTimeout: envStr('SETUP_TIMEOUT', '10m'),
  scenarios: { sold_out: hammer },
  thresholds: {
    'http_req_duration{name:purchase}': [`p(99)<${SOLD_OUT_P99_MS}`],
    unexpected_status: ['count==0'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

function isSoldOut(res) {
  return res.status === 409 && errorCode(res) === 'SOLD_OUT';
}

export function setup() {
  const runId = newRunId();
  const admin = signInAdmin();
  const sale = createSale(admin, {
    runId: runId,
    label: 'sold-out',
    totalUnits: UNITS,
    maxPerUser: UNITS,
    maxPerTransaction: UNITS,
    maxAccountsPerIp: 0,
  });
  const tokens = createBuyers(BUYERS, buyerPrefix(runId));

  // Buy the whole stock (tagged apart, so it is not in the measured purchases).
  const all = purchase(tokens[0], sale.id, UNITS, `k6-${runId}-buyout`, 'buyout');
  const order = all.status === 201 ? jsonBody(all) : null;
  if (!order || order.remainingUnits !== 0) {
    fail(`buying the ${UNITS} units answered ${all.status} ${all.body}`);
  }
  const after = purchase(tokens[tokens.length - 1], sale.id, 1, null, 'buyout');
  if (!isSoldOut(after)) {
    fail(`a purchase after the sell-out answered ${after.status} ${after.body}, not 409 SOLD_OUT`);
  }
  console.log(`sold-out: sale ${sale.id} sold out (${UNITS} units), ${tokens.length} buyers`);
  return { runId: runId, saleId: sale.id, tokens: tokens };
}

export default function (data) {
  const token = data.tokens[(__VU - 1) % data.tokens.length];
  const res = purchase(token, data.saleId, 1, USE_KEY ? idempotencyKey(data.runId) : null);
  const ok = isSoldOut(res);
  if (ok) {
    soldOut.add(1);
  } else {
    unexpectedStatus.add(1, { status: String(res.status), code: errorCode(res) || 'none' });
  }
  check(res, {
    'purchase after sell-out: 409 SOLD_OUT': function () {
      return ok;
    },
  });
}
