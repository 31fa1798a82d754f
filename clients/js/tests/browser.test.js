// The same module in headless Chromium (Debian's `chromium`, driven by playwright-core),
// imported from /tickrelay.js as the dashboard does (dashboard.test.js tests the dashboard
// itself): clients in the page, one per encoding (gzip through DecompressionStream), keep
// exactly-once-or-gap across cut connections and a relay restart.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, Proxy, Tracker, launchChromium, FrameEncoder, ScriptServer, msg } from './support.js';

let relay;
let context;
let browser;

before(async () => {
  relay = await Relay.start(['--demo', '--demo-rate', '200']);
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

test('clients in the page keep exactly-once-or-gap in every encoding', async () => {
  const proxy = await Proxy.start(relay.http);
  const page = await context.newPage();
  try {
    await page.goto(`http://${relay.http}/`);
    const encodings = ['json', 'gzip', 'protobuf'];
    await page.evaluate(async ({ url, encodings }) => {
      const { connect } = await import('/tickrelay.js');
      window.items = {};
      for (const encoding of encodings) {
        const symbol = `WEB-${encoding}`;
        window.items[symbol] = [];
        const client = await connect(url, { symbols: [symbol], encoding, backoff: { initialMs: 20, maxMs: 200 } });
        (async () => { for await (const item of client) window.items[symbol].push(item); })();
      }
    }, { url: proxy.url, encodings });
    const lastSeq = (symbol) => page.evaluate((s) => {
      const ticks = window.items[s].filter((i) => i.type === 'tick' || i.type === 'snapshot');
      return ticks.length ? ticks.at(-1).seq : 0;
    }, symbol);
    const waitAll = async (what, seq) => {
      for (const e of encodings) {
        await page.waitForFunction(([s, n]) => window.items[s].some((i) => (i.type === 'tick' || i.type === 'snapshot') && i.seq === n), [`WEB-${e}`, seq], { timeout: 15000 })
          .catch((err) => { throw new Error(`waiting for ${what} of WEB-${e}: ${err.message}`); });
      }
    };
    const feed = Promise.all(encodings.map((e) => relay.publish(`WEB-${e}`, 600, { tag: 1, batch: 10, pauseMs: 5 })));
    // Cut every client's connection twice mid-stream, each time once all are connected again.
    for (const [connects, items] of [[1, 100], [2, 300]]) {
      await page.waitForFunction(([c, n]) => Object.values(window.items).every((l) => l.length > n
        && l.filter((i) => i.type === 'connected').length === c), [connects, items], { timeout: 15000 })
        .catch((err) => { throw new Error(`waiting for connection ${connects} with ${items} items in each client: ${err.message}`); });
      proxy.cut();
    }
    await feed;
    await waitAll('seq 600', 600);
    await page.waitForFunction(() => Object.values(window.items).every((l) => l.filter((i) => i.type === 'connected').length === 3), null, { timeout: 15000 })
      .catch((err) => { throw new Error(`waiting for every client to be back after the second cut: ${err.message}`); });
    // A relay restart: the new history passes the clients' positions while they are away.
    proxy.down = true;
    await relay.restart();
    await Promise.all(encodings.map((e) => relay.publish(`WEB-${e}`, 700, { tag: 2 })));
    proxy.down = false;
    await waitAll('seq 700 of the new history', 700);
    for (const e of encodings) {
      const symbol = `WEB-${e}`;
      const items = await page.evaluate((s) => window.items[s], symbol);
      const tracker = new Tracker();
      for (const item of items) tracker.feed(item);
      assert.equal(tracker.resets.length, 1, `${symbol}: one reset for the restart`);
      assert.deepEqual(tracker.gaps, [], `${symbol}: no gap`);
      assert.equal(tracker.disconnects.length, 3, `${symbol}: two cuts and a restart`);
      assert.equal(await lastSeq(symbol), 700);
    }
  } finally {
    await page.close();
    await proxy.close();
  }
});

test('in the page, batched gzip frames inflate through DecompressionStream to every message in order', async () => {
  // Chromium's DecompressionStream cuts its output where it likes; messages are cut where they end.
  const frames = new FrameEncoder('gzip', true);
  const big = (seq) => msg.event('news', seq, JSON.stringify({ text: 'x'.repeat(20000 + seq) }));
  const script = [
    frames.frame([msg.welcome(1), msg.tick('A', 1), msg.tick('A', 2)]),
    frames.frame([big(1), msg.tick('A', 3), big(2), big(3), msg.tick('A', 4)]),
    frames.frame([msg.tick('A', 5)]),
  ];
  const server = await ScriptServer.start([script]);
  const page = await context.newPage();
  try {
    await page.goto(`http://${relay.http}/`);
    const shape = await page.evaluate(async (url) => {
      const { connect } = await import('/tickrelay.js');
      const client = await connect(url, { symbols: ['A'], channels: ['news'], encoding: 'gzip', batch: true });
      const out = [];
      while (out.at(-1) !== 'tick 5') {
        const i = await client.next();
        out.push(i.type === 'event' ? `event ${i.seq} ${i.data.text.length}` : `${i.type} ${i.seq ?? ''}`.trim());
      }
      client.close();
      return out;
    }, server.url);
    assert.deepEqual(shape, ['connected', 'tick 1', 'tick 2', 'event 1 20001', 'tick 3', 'event 2 20002', 'event 3 20003', 'tick 4', 'tick 5']);
  } finally {
    await page.close();
    await server.close();
  }
});
