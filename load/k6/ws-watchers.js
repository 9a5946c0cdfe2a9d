// ws-watchers.js: WebSocket watchers of one sale, with a trickle of buyers
// so that stock updates flow to them.
//
// setup() signs the admin in, creates a sale of UNITS units (maxPerUser
// 1000000, maxPerTransaction 1, maxAccountsPerIp 0) and signs up and in
// BUYERS customers. Then two scenarios run:
//   watchers  WATCHERS VUs, each opens one WebSocket to ws(s)://<host>/ws with
//             `Authorization: Bearer <token>` (buyer (__VU - 1) % BUYERS),
//             sends {"event":"joinFlashSale","data":{"flashSaleId":...}},
//             expects the flashSaleStatus snapshot (time from join to snapshot
//             in the ws_time_to_snapshot Trend), counts stockUpdate messages,
//             checks that each one is below the last stock it saw (the
//             contract: stock never goes up within a sale), and closes after
//             HOLD seconds.
//   buyers    (when BUY_RATE > 0) BUY_RATE purchases of one unit per second for
//             HOLD seconds, starting 2 s in, spread over every buyer, so the
//             watchers get stockUpdate messages.
// teardown() cancels the sale (KEEP_SALE=1 keeps it).
//
// Run:
//   k6 run -e BASE_URL=http://127.0.0.1:5050 -e ADMIN_EMAIL=admin@flashsale.local \
//          -e ADMIN_PASSWORD=... load/k6/ws-watchers.js
//   k6 run -e ADMIN_PASSWORD=... -e WATCHERS=2000 -e HOLD=60 load/k6/ws-watchers.js
//     (more than 200 watchers from one address: raise WS_MAX_CONNECTIONS_PER_IP)
//
// Parameters (-e NAME=value), with defaults:
//   BASE_URL            http://127.0.0.1:5050 (the WebSocket URL is derived: http->ws, https->wss, + /ws)
//   ADMIN_EMAIL         admin@flashsale.local
//   ADMIN_PASSWORD      (required)
//   WATCHERS            100     WebSocket connections, one per VU
//   HOLD                30      seconds each watcher stays connected (and the buyers run)
//   BUY_RATE            5       purchases per second during HOLD; 0: no buyers
//   BUY_VUS             5       VUs allocated for the buyers
//   UNITS               1000000 units of the sale
//   BUYERS              20      customers signed up by setup() (watchers and buyers use them)
//   SNAPSHOT_P99_MS     100     threshold on the p99 of ws_time_to_snapshot
//   SETUP_TIMEOUT       10m
//   KEEP_SALE           0       1: leave the sale open after the run
//   plus BUYER_PASSWORD, BUYER_PREFIX, SIGNUP_BATCH, SALE_MINUTES (see lib.js)
//
// Thresholds:
//   ws_time_to_snapshot   p(99) < SNAPSHOT_P99_MS
//   ws_unexpected         count == 0: a refused handshake, an `error` event from
//                         the server, an unknown or malformed message, a stock
//                         update that does not go down, no snapshot, or a close
//                         (or socket error) before HOLD is over; tagged with `reason`
//   purchase_unexpected   count == 0: a purchase answer other than 201 or a documented refusal
//   checks                rate > 0.99
// Counters without thresholds: ws_stock_updates, ws_other_events,
// purchase_created.

import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import ws from 'k6/ws';
import {
  WS_URL,
  buyerPrefix,
  cancelSale,
  classifyPurchase,
  createBuyers,
  createSale,
  envBool,
  envInt,
  envStr,
  idempotencyKey,
  newRunId,
  purchase,
  signInAdmin,
} from './lib.js';

const WATCHERS = envInt('WATCHERS', 100);
const HOLD = envInt('HOLD', 30);
const BUY_RATE = envInt('BUY_RATE', 5);
const BUY_VUS = envInt('BUY_VUS', 5);
const UNITS = envInt('UNITS', 1000000);
const BUYERS = envInt('BUYERS', 20);
const SNAPSHOT_P99_MS = envInt('SNAPSHOT_P99_MS', 100);

const timeToSnapshot = new Trend('ws_time_to_snapshot', true);
const wsUnexpected = new Counter('ws_unexpected');
const stockUpdates = new Counter('ws_stock_updates');
const otherEvents = new Counter('ws_other_events');
const purchaseUnexpected = new Counter('purchase_unexpected');
const purchaseCreated = new Counter('purchase_created');

const scenarios = {
  watchers: {
    executor: 'per-vu-iterations',
    vus: WATCHERS,
    iterations: 1,
    maxDuration: `${HOLD + 60}s`,
    exec: 'watch',
  },
};
if (BUY_RATE > 0) {
  scenarios.buyers = {
    executor: 'constant-arrival-rate',
    rate: BUY_RATE,
    timeUnit: '1s',
    duration: `${HOLD}s`,
    preAllocatedVUs: BUY_VUS,
    maxVUs: BUY_VUS * 4,
    startTime: '2s',
    exec: 'buy',
  };
}

export const options = {
  setupTimeout: envStr('SETUP_TIMEOUT', '10m'),
  scenarios: scenarios,
  thresholds: {
    ws_time_to_snapshot: [`p(99)<${SNAPSHOT_P99_MS}`],
    ws_unexpected: ['count==0'],
    purchase_unexpected: ['count==0'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

export function setup() {
  const runId = newRunId();
  const admin = signInAdmin();
  const sale = createSale(admin, {
    runId: runId,
    label: 'ws-watchers',
    totalUnits: UNITS,
    maxPerUser: 1000000,
    maxPerTransaction: 1,
    maxAccountsPerIp: 0,
  });
  const tokens = createBuyers(BUYERS, buyerPrefix(runId));
  console.log(`ws-watchers: sale ${sale.id}, ${WATCHERS} watchers on ${WS_URL} for ${HOLD} s`);
  return { runId: runId, saleId: sale.id, admin: admin, tokens: tokens };
}

/** One watcher: connect, join, hold, close. */
export function watch(data) {
  const token = data.tokens[(__VU - 1) % data.tokens.length];
  let joinedAt = 0;
  let gotSnapshot = false;
  let closing = false;
  let brokeOff = false;
  let lastUnits = -1;
  const unexpected = function (reason) {
    wsUnexpected.add(1, { reason: reason });
  };
  const wsParams = { headers: { Authorization: `Bearer ${token}` }, tags: { name: 'ws' } };

  let res = null;
  try {
    res = ws.connect(WS_URL, wsParams, function (socket) {
      socket.on('open', function () {
        joinedAt = Date.now();
        socket.send(JSON.stringify({ event: 'joinFlashSale', data: { flashSaleId: data.saleId } }));
        socket.setTimeout(function () {
          closing = true;
          socket.close();
        }, HOLD * 1000);
      });

      socket.on('message', function (raw) {
        let msg = null;
        try {
          msg = JSON.parse(raw);
        } catch (e) {
          msg = null;
        }
        if (!msg || typeof msg.event !== 'string' || !msg.data) {
          unexpected('bad-message');
          return;
        }
        const d = msg.data;
        switch (msg.event) {
          case 'flashSaleStatus':
            if (d.flashSaleId !== data.saleId || typeof d.availableUnits !== 'number') {
              unexpected('bad-snapshot');
              return;
            }
            if (!gotSnapshot) {
              gotSnapshot = true;
              timeToSnapshot.add(Date.now() - joinedAt);
            }
            lastUnits = d.availableUnits;
            break;
          case 'stockUpdate':
            stockUpdates.add(1);
            if (typeof d.availableUnits !== 'number') {
              unexpected('bad-stock-update');
            } else if (lastUnits >= 0 && d.availableUnits >= lastUnits) {
              unexpected('stock-not-decreasing');
            } else {
              lastUnits = d.availableUnits;
            }
            break;
          case 'flashSaleStarted':
          case 'flashSaleEnded':
            otherEvents.add(1, { event: msg.event });
            break;
          case 'error':
            unexpected(`error-${d.code || 'none'}`);
            break;
          default:
            unexpected('unknown-event');
        }
      });

      // k6 reports a close other than 1000 (e.g. 1001 shutdown, 1008 slow
      // client, 1009 too large) as an error.
      socket.on('error', function () {
        if (!closing && !brokeOff) {
          brokeOff = true;
          unexpected('socket-error');
        }
      });
      socket.on('close', function () {
        if (!closing && !brokeOff) {
          brokeOff = true;
          unexpected('closed-early');
        }
      });
    });
  } catch (e) {
    unexpected('connect-failed');
  }

  const upgraded = res !== null && res.status === 101;
  if (res !== null && !upgraded) {
    unexpected(`handshake-${res.status}`);
  }
  if (upgraded && !gotSnapshot) {
    unexpected('no-snapshot');
  }
  check(res, {
    'ws: handshake 101': function () {
      return upgraded;
    },
    'ws: snapshot received': function () {
      return gotSnapshot;
    },
  });
}

/** One purchase of one unit, spread over every buyer. */
export function buy(data) {
  const i = exec.scenario.iterationInTest % data.tokens.length;
  const res = purchase(data.tokens[i], data.saleId, 1, idempotencyKey(data.runId));
  const c = classifyPurchase(res);
  if (c.outcome === 'created') {
    purchaseCreated.add(1);
  } else if (!c.expected) {
    purchaseUnexpected.add(1, { status: String(res.status), code: c.code || 'none' });
  }
  check(res, {
    'purchase: 201 or a documented refusal': function () {
      return c.expected;
    },
  });
}

export function teardown(data) {
  if (!envBool('KEEP_SALE', false)) {
    cancelSale(data.admin, data.saleId);
  }
}
