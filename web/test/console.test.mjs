// The web console in a real browser: Debian's chromium driven by
// playwright-core (no browser download), against a running server
// (scripts/console-test.sh starts one with its stores).
//
// The scenario: the admin signs in and creates a product and a sale that
// starts in a few seconds; a buyer, in a second browser context, signs up
// and sees it counting down, then live; purchases made through the API move
// the buyer's stock bar; the buyer double-clicks Buy and gets one order,
// listed with its status; other buyers sell it out and both pages say so;
// the admin reconciles, reads the leaderboard, and adds and removes a
// blocklist entry. Screenshots of both pages are saved.
//
// Environment: CONSOLE_BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD,
// CONSOLE_SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = need('CONSOLE_BASE_URL');
const adminEmail = need('ADMIN_EMAIL');
const adminPassword = need('ADMIN_PASSWORD');
const shots = need('CONSOLE_SCREENSHOT_DIR');
const UNITS = 12;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function log(msg) {
  console.log(`console-test: ${msg}`);
}

// --- the API, for the other buyers -----------------------------------------

async function api(method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(base + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, data: text ? JSON.parse(text) : null, headers: res.headers };
}

async function buyer(tag) {
  const email = `${tag}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}@console.test`;
  const password = 'buyer-password-1';
  const up = await api('POST', '/api/signup', { body: { name: tag, email, password } });
  check(up.status === 201, `signup of ${email}: ${up.status}`);
  const inn = await api('POST', '/api/signin', { body: { email, password } });
  check(inn.status === 200, `signin of ${email}: ${inn.status}`);
  return { email, password, token: inn.data.accessToken };
}

async function buy(who, sale, quantity) {
  const r = await api('POST', '/api/purchase-product', {
    token: who.token,
    body: { flashSaleId: sale, quantity },
    headers: { 'idempotency-key': crypto.randomUUID() },
  });
  check(r.status === 201, `API purchase of ${quantity}: ${r.status} ${JSON.stringify(r.data)}`);
  return r.data;
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

// --- the browser --------------------------------------------------------------

/** Polls `fn(arg)` in the page until it is truthy, or fails naming `what`. */
async function until(page, what, fn, arg, timeout = 20000) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    throw new Error(`timed out after ${timeout} ms waiting for: ${what}\n${e.message.split('\n')[0]}`);
  }
}

const text = (page, sel) => page.locator(sel).first().innerText();

/** Fails the run on a CSP violation, an uncaught error or a console error. */
function watch(page, name, problems) {
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
}

async function signIn(page, email, password) {
  await page.fill('#signin-form input[name=email]', email);
  await page.fill('#signin-form input[name=password]', password);
  await page.click('#signin-form button[type=submit]');
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const problems = [];
  try {
    await scenario(browser, problems);
  } catch (e) {
    // What each page showed when it failed.
    for (const ctx of browser.contexts()) {
      for (const [i, p] of ctx.pages().entries()) {
        const name = `failure-${browser.contexts().indexOf(ctx)}-${i}.png`;
        await p.screenshot({ path: join(shots, name), fullPage: true }).catch(() => {});
        const outcomes = await p.locator('.outcome').allInnerTexts().catch(() => []);
        console.error(`console-test: ${name}: messages on the page: ${JSON.stringify(outcomes.filter(Boolean))}`);
      }
    }
    if (problems.length) console.error(`console-test: page problems:\n  ${problems.join('\n  ')}`);
    throw e;
  } finally {
    await browser.close();
  }
  check(problems.length === 0, `no CSP violations or errors in the pages:\n  ${problems.join('\n  ')}`);
  log('PASS');
}

async function scenario(browser, problems) {
  const viewport = { width: 1280, height: 900 };
  const adminCtx = await browser.newContext({ viewport });
  const buyerCtx = await browser.newContext({ viewport: { width: 1100, height: 860 } });
  const admin = await adminCtx.newPage();
  const page = await buyerCtx.newPage();
  watch(admin, 'admin', problems);
  watch(page, 'buyer', problems);

  // The page itself: HTML, with its policy, from the binary.
  const res = await admin.goto(base + '/', { waitUntil: 'load' });
  check(res.status() === 200, `GET / for a browser answers 200, got ${res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), `CSP header: ${csp}`);
  check(res.headers()['x-content-type-options'] === 'nosniff', 'nosniff on the page');

  // 1. The admin signs in and creates a product and a sale.
  await signIn(admin, adminEmail, adminPassword);
  await until(admin, 'the admin console', () => document.body.dataset.role === 'admin' && document.querySelector('#sale-form'));
  await until(admin, 'the admin socket is live', () => document.querySelector('#conn').classList.contains('live'));
  log('admin signed in, socket live');
  await admin.fill('#product-form input[name=name]', 'Aurora headphones');
  await admin.fill('#product-form input[name=description]', 'Noise-cancelling, 40 h battery');
  await admin.fill('#product-form input[name=price]', '199');
  await admin.click('#product-form button[type=submit]');
  await until(admin, 'the product is created', () => /Created Aurora headphones/.test(document.querySelector('#product-msg').textContent));
  const form = '#sale-form';
  await admin.fill(`${form} input[name=startsIn]`, '8');
  await admin.fill(`${form} input[name=totalUnits]`, String(UNITS));
  await admin.fill(`${form} input[name=discount]`, '25');
  await admin.fill(`${form} input[name=maxPerUser]`, '3');
  await admin.fill(`${form} input[name=maxPerTransaction]`, '2');
  await admin.click(`${form} button[type=submit]`);
  await until(admin, 'the sale is created', () => /Sale [0-9a-f]{24} created/.test(document.querySelector('#sale-msg').textContent));
  const sale = (await text(admin, '#sale-msg')).match(/Sale ([0-9a-f]{24})/)[1];
  const adminCard = `#live-sales [data-sale="${sale}"]`;
  await until(admin, 'the admin sees the sale coming', (sel) => document.querySelector(sel)?.dataset.phase === 'upcoming', adminCard);
  log(`sale ${sale} created, starts in 8 s`);

  // 2. A buyer signs up in another context and sees it counting down.
  await page.goto(base + '/');
  const me = { email: `ui-buyer-${Date.now()}@console.test`, password: 'buyer-password-1' };
  await page.click('details summary');
  await page.fill('#signup-form input[name=name]', 'Dana Buyer');
  await page.fill('#signup-form input[name=email]', me.email);
  await page.fill('#signup-form input[name=password]', me.password);
  await page.click('#signup-form button[type=submit]');
  const card = `#sales [data-sale="${sale}"]`;
  await until(page, 'the buyer sees the sale upcoming', (sel) => document.querySelector(sel)?.dataset.phase === 'upcoming', card);
  const countdown = await text(page, `${card} .clock`);
  check(/^Starts in \d+s$/.test(countdown), `a countdown to the start, got "${countdown}"`);
  check((await page.locator(`${card} button.buy`).isDisabled()), 'Buy is disabled before the start');
  await until(page, 'the buyer socket is live', () => document.querySelector('#conn').classList.contains('live'));
  log(`buyer sees "${countdown}"`);

  // 3. The sale starts: the page says so without a reload.
  await until(page, 'the sale goes live on the buyer page', (sel) => document.querySelector(sel)?.dataset.phase === 'live', card, 30000);
  check(!(await page.locator(`${card} button.buy`).isDisabled()), 'Buy is enabled once live');
  const stock = async () => ({
    bar: await page.locator(`${card} progress`).evaluate((p) => p.value),
    words: await text(page, `${card} .stock-count`),
  });
  const s0 = await stock();
  check(s0.bar === UNITS && s0.words === `${UNITS} of ${UNITS} left`, `full stock at the start: ${JSON.stringify(s0)}`);
  log('the sale is live on the buyer page');

  // 4. Purchases through the API move the buyer's stock bar.
  const others = [];
  for (let i = 0; i < 5; i++) others.push(await buyer(`api-buyer-${i}`));
  for (const o of others.slice(0, 3)) await buy(o, sale, 2);
  await until(page, 'the stock bar falls to 6', (sel) => document.querySelector(`${sel} progress`).value === 6 && /^6 of 12 left$/.test(document.querySelector(`${sel} .stock-count`).textContent), card);
  log('three API purchases moved the stock bar to 6');

  // 5. The buyer double-clicks Buy (quantity 2): one order, shown in words.
  await page.fill(`${card} input.qty`, '2');
  check((await page.locator(`${card} input.qty`).getAttribute('max')) === '2', 'quantity capped by maxPerTransaction');
  await page.dblclick(`${card} button.buy`);
  await until(page, 'the order id in words', (sel) => /^Order [0-9a-f]{24}-\d+: 2 × /.test(document.querySelector(`${sel} .outcome`).textContent), card);
  const outcome = await text(page, `${card} .outcome`);
  const orderId = outcome.match(/Order ([0-9a-f]{24}-\d+)/)[1];
  const mine = await buyerOrders(me);
  check(mine.length === 1 && mine[0].id === orderId && mine[0].quantity === 2, `a double click bought once: ${JSON.stringify(mine)}`);
  await until(page, 'the order in the orders table', (id) => !!document.querySelector(`#orders tr[data-order="${id}"]`), orderId);
  await until(page, 'the order recorded', (id) => document.querySelector(`#orders tr[data-order="${id}"]`)?.dataset.status === 'recorded', orderId, 30000);
  await until(page, 'the stock bar at 4', (sel) => document.querySelector(`${sel} progress`).value === 4, card);
  log(`buyer: "${outcome}", listed once, recorded`);

  // 6. The rest sells out: both pages say so.
  await buy(others[3], sale, 2);
  await buy(others[4], sale, 2);
  await until(page, 'the buyer page shows sold out', (sel) => document.querySelector(sel)?.dataset.phase === 'sold-out', card);
  check((await text(page, `${card} .badge`)) === 'Sold out', 'the buyer badge says Sold out');
  check(await page.locator(`${card} button.buy`).isDisabled(), 'Buy is disabled once sold out');
  check((await page.locator(`${card} progress`).evaluate((p) => p.value)) === 0, 'the stock bar is empty');
  await until(admin, 'the admin console shows sold out', (sel) => document.querySelector(sel)?.dataset.phase === 'sold-out', adminCard);
  await until(admin, 'the sell-out time', (sel) => /s after the start/.test(document.querySelector(`${sel} .sold-out-time`).textContent), adminCard);
  const rate = await text(admin, `${adminCard} .rate`);
  check(/peak [1-9]\d*\/s/.test(rate), `purchases per second charted: ${rate}`);
  log(`sold out on both pages; admin: ${await text(admin, `${adminCard} .sold-out-time`)} ${rate}`);

  // 7. Admin: reconcile, leaderboard, blocklist.
  await admin.click(`${adminCard} button.reconcile`);
  await until(admin, 'the reconcile report', (sel) => /Redis sold 12/.test(document.querySelector(`${sel} .recon`).textContent), adminCard);
  await admin.click(`${adminCard} button:has-text("Leaderboard")`);
  await until(admin, 'six buyers on the leaderboard', () => document.querySelectorAll('#leaderboard tbody tr').length === 6);
  check((await text(admin, '#leaderboard tbody tr td')) === '1', 'ranked from 1');
  await admin.fill('#block-form input[name=value]', '203.0.113.7');
  await admin.selectOption('#block-form select[name=type]', 'ip');
  await admin.fill('#block-form input[name=reason]', 'card testing');
  await admin.click('#block-form button[type=submit]');
  // Stored as a network.
  const row = '#blocklist tr[data-value="203.0.113.7/32"]';
  await admin.locator(row).waitFor({ timeout: 10000 });
  log('blocklist entry added');

  // Screenshots (the blocklist entry is visible in the admin one).
  await page.screenshot({ path: join(shots, 'buyer.png'), fullPage: true });
  await admin.screenshot({ path: join(shots, 'admin.png'), fullPage: true });
  log(`screenshots in ${shots}`);

  await admin.click(`${row} button.remove`);
  await admin.locator(row).waitFor({ state: 'detached', timeout: 10000 });
  log('blocklist entry removed');
}

async function buyerOrders(who) {
  const inn = await api('POST', '/api/signin', { body: { email: who.email, password: who.password } });
  const r = await api('GET', '/api/orders', { token: inn.data.accessToken });
  return r.data;
}

main().catch((e) => {
  console.error(`console-test: FAIL: ${e.stack || e.message}`);
  process.exit(1);
});
