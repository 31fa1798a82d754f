// The dashboard's bars panel (`/dashboard-bars.js`) in headless Chromium against the real
// relay binary: for the tape's symbol it draws the 1 s bars a client of `bars:1s:SYMBOL`
// receives (one candle per bar, with its values) and shows the `ticker:SYMBOL` statistics,
// and a bar published while the page is open appears on it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../tickrelay.js';
import { Relay, launchChromium } from './support.js';

const S = 1_000_000_000;
let relay;
let browser;

before(async () => {
  // Bars close on trades only (a day of grace); updates go out quickly.
  relay = await Relay.start(['--bar-grace', '24h', '--derived-interval', '20ms']);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

async function publish(symbol, trades) {
  const [host, port] = relay.ingest.split(':');
  const socket = net.connect(Number(port), host);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const text = trades.map(([ts, price, size]) => `{"symbol":"${symbol}","price":${price},"size":${size},"ts_ns":${ts}}\n`).join('');
  await new Promise((resolve, reject) => socket.write(text, (e) => (e ? reject(e) : resolve())));
  await new Promise((resolve) => socket.end(resolve));
}

/** What a client of the channels gets first: the bars snapshot and the ticker's. */
async function snapshots(symbol) {
  const client = await connect(relay.url, { channels: [`bars:1s:${symbol}`, `ticker:${symbol}`] });
  const got = {};
  try {
    while (!got.bars || !got.ticker) {
      const item = await client.next();
      if (item.type === 'bar_snapshot') got.bars = item.bars;
      if (item.type === 'ticker') got.ticker = item;
    }
  } finally {
    client.close();
  }
  return got;
}

const shown = (page) => page.evaluate(() => ({
  candles: [...document.querySelectorAll('#bars_chart g')].map((g) => ({
    start_ns: Number(g.dataset.start_ns),
    open: Number(g.dataset.open),
    high: Number(g.dataset.high),
    low: Number(g.dataset.low),
    close: Number(g.dataset.close),
    trades: Number(g.dataset.trades),
  })),
  ticker: Object.fromEntries([...document.querySelectorAll('#ticker td')].map((td) => [td.dataset.k, td.dataset.value])),
}));

test('the bars panel draws the symbol\'s 1 s bars and shows its 24 h statistics', async () => {
  const symbol = 'DASH-BARS';
  // Whole seconds an hour ago (ts_ns below 2^53, exact as JS numbers): 90 trades, 3 a second.
  const base = Math.floor(Date.now() / 1000 - 3600) * S;
  const trades = Array.from({ length: 90 }, (_, i) => [base + i * 333_000_000, 20 + ((i * 7) % 13) / 4, 1 + (i % 3)]);
  await publish(symbol, trades);
  await relay.waitSeq(symbol, 90);
  // The open bar (second 29) and the ticker go out on the derived timer, after the trades are
  // sequenced: read the snapshots until they include the last trade.
  const [, lastPrice] = trades[trades.length - 1];
  let want = await snapshots(symbol);
  for (let i = 0; i < 100 && !(want.bars.length >= 30 && want.ticker.last === lastPrice); i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    want = await snapshots(symbol);
  }
  assert.ok(want.bars.length >= 30, `the snapshot holds the bars: ${want.bars.length}`);
  assert.equal(want.ticker.last, lastPrice, 'the ticker has the last trade');

  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://${relay.http}/?symbol=${symbol}`);
  await page.waitForFunction((n) => document.querySelectorAll('#bars_chart g').length >= n && document.querySelector('#ticker td[data-k=last]').dataset.value, want.bars.length, { timeout: 15000 });
  const first = await shown(page);
  const values = (bars) => bars.map(({ start_ns, open, high, low, close, trades: n }) => ({ start_ns, open, high, low, close, trades: n }));
  assert.deepEqual(first.candles, values(want.bars), 'one candle per bar, with the relay\'s values');
  for (const k of ['last', 'change', 'change_percent', 'high', 'low', 'volume']) {
    assert.equal(Number(first.ticker[k]), want.ticker[k], `ticker ${k}`);
  }

  // A later second's trades while the page is open: their bar appears, the ticker moves.
  const later = base + 40 * S;
  await publish(symbol, [[later, 99.25, 2], [later + 1_000_000, 99.5, 1]]);
  await page.waitForFunction((start) => [...document.querySelectorAll('#bars_chart g')].some((g) => g.dataset.start_ns === String(start) && g.dataset.trades === '2'), later, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('#ticker td[data-k=last]').dataset.value === '99.5', null, { timeout: 15000 });
  const after = await shown(page);
  assert.ok(after.candles.length <= 60, 'at most a minute of bars');
  assert.deepEqual(errors, [], 'no script errors on the page');
  await page.close();
});
