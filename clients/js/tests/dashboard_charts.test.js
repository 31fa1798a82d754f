// The dashboard's trend charts and latency histogram in headless Chromium against the real
// relay binary: under load the charts take a point per /stats reading and their pixels
// change; every window label says at least 1 s; a client's mistake is listed apart from the
// relay's own errors; once the relay stops, the page says "disconnected" and the charts
// freeze (the same points and the same pixels while the page keeps retrying).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../tickrelay.js';
import { Relay, fastBackoff, launchChromium } from './support.js';

let relay;
let browser;

before(async () => {
  relay = await Relay.start(['--demo', '--demo-rate', '200']);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

const trend = (page) => page.evaluate(() => window.dashboard.trend.map((p) => ({ ...p })));
const shot = (page, id) => page.locator(`#${id}`).screenshot();
const polls = (page) => page.evaluate(() => window.dashboard.polls);

test('the charts move under load, the labels say their window, and the charts freeze when the relay stops', async () => {
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1280, height: 1600 });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const client = await connect(relay.url, { symbols: ['*'], backoff: fastBackoff });
  const drain = (async () => { for await (const _ of client); })();
  try {
    assert.equal((await fetch(`http://${relay.http}/no-such-page`)).status, 404);
    await page.goto(`http://${relay.http}/?symbol=BTC-USD`);
    // A few readings with rates: each chart has points and the histogram has bars.
    await page.waitForFunction(() => window.dashboard.trend.filter((p) => p.deliveries > 0 && p.p99 > 0).length >= 3,
      null, { timeout: 20000 })
      .catch((e) => { throw new Error(`waiting for three readings with deliveries: ${e.message}`); });
    for (const id of ['chart_deliveries', 'chart_ingest', 'chart_latency', 'chart_sessions', 'chart_slow']) {
      const points = Number(await page.getAttribute(`#${id}`, 'data-points'));
      assert.ok(points >= 3, `${id} draws ${points} points`);
    }
    assert.ok(await page.locator('#latency_histogram rect').count() > 0, 'the histogram has bars');
    const windows = await page.evaluate(() => [...document.querySelectorAll('.window')].map((el) => el.textContent));
    assert.ok(windows.length >= 4 && windows.every((w) => Number(w) >= 1), `window labels: ${windows}`);

    // Moving: two readings later the deliveries chart has more points and other pixels.
    const first = await shot(page, 'chart_deliveries');
    const before = await trend(page);
    const seen = await polls(page);
    await page.waitForFunction((n) => window.dashboard.polls >= n + 2, seen, { timeout: 15000 });
    const second = await shot(page, 'chart_deliveries');
    const later = await trend(page);
    assert.ok(later.at(-1).at > before.at(-1).at, 'a newer reading was charted');
    assert.ok(!first.equals(second), 'the chart\'s pixels changed under load');

    // Client mistakes apart from the relay's own errors.
    assert.equal(await page.locator('#errors_client #error-not_found').count(), 1);
    assert.equal(await page.locator('#errors_relay tbody tr').count(), 0);

    // The relay stops: the page says so, and its charts hold still while it retries.
    await relay.stop();
    await page.waitForFunction(() => window.dashboard.state === 'disconnected', null, { timeout: 5000 });
    const frozen = await trend(page);
    const third = await shot(page, 'chart_deliveries');
    await page.waitForFunction(() => window.dashboard.failures >= 3, null, { timeout: 20000 })
      .catch((e) => { throw new Error(`waiting for the page to retry three times: ${e.message}`); });
    const fourth = await shot(page, 'chart_deliveries');
    assert.deepEqual(await trend(page), frozen, 'no point was added while the relay was gone');
    assert.ok(third.equals(fourth), 'the chart\'s pixels did not change while the relay was gone');
    assert.deepEqual(pageErrors, []);
  } finally {
    client.close();
    await drain.catch(() => {});
    await page.close();
  }
});
