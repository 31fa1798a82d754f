// The operator dashboard at `/` in headless Chromium (Debian's `chromium`, driven by
// playwright-core) against the real relay binary with its demo feed on two shards: with a
// known set of clients connected, what the page shows matches GET /stats read by the test
// around the page's own reading (stable counters exactly, counters between the two reads,
// rates within bounds of the test's own measure); its latencies are the relay's histogram,
// never negative or absurd; its tape shows the chosen symbol through the JS client; and it
// says "disconnected" within seconds of the relay stopping, then recovers when it restarts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../tickrelay.js';
import { Relay, fastBackoff, launchChromium, waitFor } from './support.js';

const DEMO_RATE = 200;
let relay;
let context;
let browser;

before(async () => {
  relay = await Relay.start(['--demo', '--demo-rate', String(DEMO_RATE), '--shards', '2']);
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

const stats = async () => (await fetch(`http://${relay.http}/stats`)).json();
const subscriptions = (s) => [s.subscriptions, s.channel_subscriptions].reduce((n, o) => n + Object.values(o ?? {}).reduce((a, b) => a + b, 0), 0)
  + s.wildcard_subscriptions;
const sumShards = (s, key) => s.shards.reduce((n, shard) => n + shard[key], 0);

/** The page's numbers (`data-value` of each shown value), read between two /stats reads:
 * the page's own /stats reading is newer than `before` and older than `after`. */
async function bracket(page) {
  const early = await stats();
  await page.waitForFunction((t) => window.dashboard.uptime_s > t, early.uptime_s, { timeout: 10000 })
    .catch((e) => { throw new Error(`waiting for the page to read /stats after ${early.uptime_s} s: ${e.message}`); });
  const shown = await page.evaluate(() => {
    const value = (el) => (el && el.dataset.value !== '' ? Number(el.dataset.value) : undefined);
    const byId = (id) => value(document.getElementById(id));
    const cell = (rowId, sel) => value(document.querySelector(`#${rowId} ${sel}`));
    const latency = (rowId) => Object.fromEntries(['p50', 'p99', 'p999', 'count'].map((q) => [q, cell(rowId, `[data-q=${q}]`)]));
    return {
      state: window.dashboard.state,
      uptime: window.dashboard.uptime_s,
      connections: byId('connections'),
      subscriptions: byId('subscriptions'),
      symbols: byId('symbols'),
      deliveriesRate: byId('deliveries_rate'),
      ingestRate: byId('ingest_rate'),
      total: latency('latency_total'),
      recent: latency('latency_recent'),
      slow: cell('slow_disconnects', '[data-k=total]'),
      conflated: cell('conflated', '[data-k=total]'),
      shards: [...document.querySelectorAll('#shards tbody tr')].map((tr) => ({ id: tr.cells[0].textContent, sessions: value(tr.cells[1]), p99: value(tr.cells[6]) })),
      errors: Object.fromEntries([...document.querySelectorAll('#errors_client tbody tr')].map((tr) => [tr.cells[0].textContent, value(tr.cells[1])])),
      relayErrors: document.querySelectorAll('#errors_relay tbody tr').length,
      // The ticker's change is signed by nature (a falling price): left out of the check
      // for negative numbers below, which is about counters and rates.
      text: [...document.querySelectorAll('#ticker [data-k^=change]')]
        .reduce((text, td) => (td.innerText ? text.split(td.innerText).join('') : text), document.getElementById('main').innerText),
    };
  });
  const late = await stats();
  return { early, shown, late };
}

test('the dashboard shows what /stats says, says when the relay is gone, and recovers', async () => {
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // A known set of clients: two by name on ETH-USD, one on SOL-USD too, one on `*` (the
  // demo publishes all three symbols, so every shard delivers).
  const clients = await Promise.all([['ETH-USD'], ['ETH-USD', 'SOL-USD'], ['*']]
    .map((symbols) => connect(relay.url, { symbols, backoff: fastBackoff })));
  const drains = clients.map((c) => (async () => { for await (const _ of c); })());
  try {
    // Two requests that are errors, counted under not_found.
    for (let i = 0; i < 2; i++) assert.equal((await fetch(`http://${relay.http}/no-such-page`)).status, 404);
    await page.goto(`http://${relay.http}/?symbol=BTC-USD`);
    await page.waitForFunction(() => document.querySelectorAll('#tape tbody tr.tick').length >= 3, null, { timeout: 15000 })
      .catch((e) => { throw new Error(`waiting for BTC-USD ticks on the tape: ${e.message}`); });
    // Three clients here, the page's tape, its bars panel (bars:1s:BTC-USD and
    // ticker:BTC-USD, on a connection of its own) and its book panel: six sessions, eight
    // subscriptions.
    await waitFor('six sessions', async () => (await stats()).sessions === 6);
    // Rates need a window: let the page take a few readings, and measure alongside it.
    const start = await stats();
    await page.waitForFunction(() => window.dashboard.polls >= 4, null, { timeout: 15000 });
    const { early, shown, late } = await bracket(page);

    assert.equal(shown.state, 'live');
    assert.equal(shown.connections, 6);
    assert.equal(early.sessions, 6);
    assert.equal(late.sessions, 6);
    assert.equal(shown.subscriptions, 8);
    assert.equal(subscriptions(early), 8);
    assert.equal(subscriptions(late), 8);
    assert.ok(early.symbols <= shown.symbols && shown.symbols <= late.symbols, `symbols ${shown.symbols} outside ${early.symbols}..${late.symbols}`);
    assert.deepEqual(shown.shards.map((s) => s.id), ['0', '1']);
    assert.deepEqual(shown.shards.map((s) => s.sessions), early.shards.map((s) => s.sessions));
    assert.deepEqual(shown.shards.map((s) => s.sessions), late.shards.map((s) => s.sessions));
    assert.equal(shown.errors.not_found, 2, 'a client\'s 404 is listed among client and publisher mistakes');
    assert.equal(shown.relayErrors, 0, 'and not among the relay\'s own errors');
    assert.equal(early.errors.not_found, 2);
    assert.equal(late.errors.not_found, 2);
    assert.equal(shown.slow, sumShards(late, 'slow_disconnects'));
    assert.equal(shown.conflated, sumShards(late, 'conflated'));

    // Rates: the test's own measure over the same stretch of the relay's time.
    const ingestRate = (late.ticks_in - start.ticks_in) / (late.uptime_s - start.uptime_s);
    const deliveriesRate = (late.ticks_out - start.ticks_out) / (late.uptime_s - start.uptime_s);
    assert.ok(ingestRate > DEMO_RATE * 0.5, `the demo publishes about ${DEMO_RATE}/s: ${ingestRate}`);
    for (const [name, page, own] of [['ingest', shown.ingestRate, ingestRate], ['deliveries', shown.deliveriesRate, deliveriesRate]]) {
      assert.ok(page > own * 0.6 && page < own * 1.6, `${name}/s: the page shows ${page}, /stats gives ${own}`);
    }

    // Latency: the relay's histogram, since start between the two reads (percentiles within
    // one bucket, 19 %), the recent window sane: never negative, never beyond the histogram.
    assert.ok(early.latency_us.count <= shown.total.count && shown.total.count <= late.latency_us.count,
      `latency samples ${shown.total.count} outside ${early.latency_us.count}..${late.latency_us.count}`);
    shown.shards.forEach((shard, i) => {
      const [a, b] = [early.shards[i].latency_us.p99, late.shards[i].latency_us.p99];
      if (a === undefined || b === undefined) return;
      assert.ok(shard.p99 >= Math.min(a, b) / 1.19 && shard.p99 <= Math.max(a, b) * 1.19, `shard ${i} p99 ${shard.p99} outside ${a}..${b}`);
    });
    for (const q of ['p50', 'p99', 'p999']) {
      const lo = Math.min(early.latency_us[q], late.latency_us[q]) / 1.19;
      const hi = Math.max(early.latency_us[q], late.latency_us[q]) * 1.19;
      assert.ok(shown.total[q] >= lo && shown.total[q] <= hi, `${q} ${shown.total[q]} outside ${lo}..${hi}`);
      assert.ok(shown.recent[q] >= 1 && shown.recent[q] < 70e6, `recent ${q}: ${shown.recent[q]} µs`);
    }
    assert.ok(shown.recent.count > 0);
    assert.doesNotMatch(shown.text, /NaN|Infinity|undefined|(^|\s)-\d/, 'no negative or broken number on the page');

    // The tape: BTC-USD through the JS client, newest first, each seq once.
    const seqs = await page.evaluate(() => [...document.querySelectorAll('#tape tbody tr.tick')].map((tr) => Number(tr.cells[1].textContent)));
    assert.ok(seqs.every((s, i) => i === 0 || s === seqs[i - 1] - 1), `tape seqs newest first, consecutive: ${seqs}`);

    // The relay stops: the page says so within seconds, and marks its numbers stale. (Once
    // it has run longer than its successor will have when the page sees it again: the
    // page must not take readings of two relays for one window.)
    await page.waitForFunction(() => window.dashboard.uptime_s >= 12, null, { timeout: 15000 });
    const uptimeBefore = await page.evaluate(() => window.dashboard.uptime_s);
    await relay.stop();
    const stopped = Date.now();
    await page.waitForFunction(() => document.getElementById('feed').textContent === 'disconnected', null, { timeout: 5000 })
      .catch((e) => { throw new Error(`waiting for "disconnected" after the relay stopped: ${e.message}`); });
    assert.ok(Date.now() - stopped < 5000);
    assert.ok(await page.evaluate(() => document.getElementById('main').classList.contains('stale')));
    await page.waitForFunction(() => window.dashboard.tape.state === 'disconnected', null, { timeout: 15000 })
      .catch((e) => { throw new Error(`waiting for the tape to say disconnected: ${e.message}`); });

    // It comes back: a new relay on the same ports (its uptime starts again) is shown live,
    // and the tape resumes on its new history.
    await relay.launch(['--listen', relay.http, '--ingest-tcp', relay.ingest, '--ingest-tcp-protobuf', relay.ingestProtobuf]);
    await page.waitForFunction((t) => document.getElementById('feed').textContent === 'live' && window.dashboard.uptime_s < t,
      uptimeBefore, { timeout: 15000 })
      .catch((e) => { throw new Error(`waiting for the page to recover after the restart: ${e.message}`); });
    await page.waitForFunction(() => window.dashboard.tape.state === 'live', null, { timeout: 15000 })
      .catch((e) => { throw new Error(`waiting for the tape to reconnect: ${e.message}`); });
    // Its rates start afresh at once (a second reading), not after the old relay's window.
    await page.waitForFunction(() => document.getElementById('ingest_rate').dataset.value !== '', null, { timeout: 4000 })
      .catch((e) => { throw new Error(`waiting for the restarted relay's rates: ${e.message}`); });
    const again = await bracket(page);
    assert.equal(again.shown.state, 'live');
    assert.ok(again.shown.ingestRate >= 0, 'a fresh relay\'s rates start afresh, never negative');
    assert.doesNotMatch(again.shown.text, /NaN|Infinity|undefined|(^|\s)-\d/);
    assert.deepEqual(pageErrors, []);
  } finally {
    for (const c of clients) c.close();
    await Promise.allSettled(drains);
    await page.close();
  }
});
