// Order books in the JavaScript client against the real relay binary: random snapshot/delta
// sequences (seeded) give, at every seq and every depth, the book of an independent model
// (integer prices, its own text and CRC32 code) in JSON, gzip and protobuf; and the
// dashboard's book panel in headless Chromium shows that book, live.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../tickrelay.js';
import { compareDecimal } from '../book.js';
import { Relay, fastBackoff, launchChromium, waitFor } from './support.js';

let relay;

before(async () => {
  relay = await Relay.start(['--book-depths', '2,5']);
});

after(async () => {
  await relay?.stop();
});

const CHANNELS = { 'book:P:2': 2, 'book:P:5': 5, 'book:P': Infinity };

/** A small seeded generator (xorshift), so a failure can be replayed by its seed. */
function random(seed) {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x % n;
  };
}

/** Prices in cents and sizes in thousandths: bids 98.00..99.90, asks 100.10..102.00. */
function updates(seed, count) {
  const next = random(seed);
  const side = (bid) => Array.from({ length: next(10) }, () => [
    bid ? 9800 + next(20) * 10 : 10010 + next(20) * 10,
    next(4) === 0 ? 0 : 1 + next(5000),
  ]);
  const all = [{ snapshot: true, bids: side(true), asks: side(false) }];
  for (let i = 0; i < count; i++) all.push({ snapshot: next(15) === 0, bids: side(true), asks: side(false) });
  return all;
}

/** `value / 10^places` in shortest exact text, written here without the relay's code. */
function fixed(value, places) {
  const scale = 10 ** places;
  const frac = String(value % scale).padStart(places, '0').replace(/0+$/, '');
  return frac ? `${Math.floor(value / scale)}.${frac}` : String(Math.floor(value / scale));
}

function line(u) {
  // Spelled three ways (number, string, trailing zeros): one level to the relay.
  const num = (v, places, i) => [fixed(v, places), `"${fixed(v, places)}"`, `"${fixed(v, places)}${fixed(v, places).includes('.') ? '00' : '.0'}"`][i % 3];
  const levels = (l) => `[${l.map(([p, s], i) => `[${num(p, 2, i)},${num(s, 3, i + 1)}]`).join(',')}]`;
  return `{"type":"book","symbol":"P","snapshot":${u.snapshot},"bids":${levels(u.bids)},"asks":${levels(u.asks)},"ts_ns":1}`;
}

/** The model's top levels after each update: states[seq - 1][depth] = {bids, asks, checksum}. */
function model(all) {
  const bids = new Map();
  const asks = new Map();
  return all.map((u) => {
    if (u.snapshot) { bids.clear(); asks.clear(); }
    for (const [side, levels] of [[bids, u.bids], [asks, u.asks]]) {
      for (const [p, s] of levels) if (s === 0) side.delete(p); else side.set(p, s);
    }
    const top = (side, depth, desc) => [...side.keys()].sort((a, b) => (desc ? b - a : a - b)).slice(0, depth).map((p) => [fixed(p, 2), fixed(side.get(p), 3)]);
    return Object.fromEntries(Object.entries(CHANNELS).map(([channel, depth]) => {
      const view = { bids: top(bids, depth, true), asks: top(asks, depth, false) };
      return [channel, { ...view, checksum: crc([...view.bids, ...view.asks].map(([p, s]) => `${p}:${s}`).join('|')) }];
    }));
  });
}

/** CRC32 (IEEE), bit by bit: a second implementation beside the client's table. */
function crc(text) {
  let c = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

async function publish(lines) {
  const [host, port] = relay.ingest.split(':');
  const socket = net.connect(Number(port), host);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  await new Promise((resolve, reject) => socket.write(lines.map((l) => `${l}\n`).join(''), (e) => (e ? reject(e) : resolve())));
  await new Promise((resolve) => socket.end(resolve));
}

let symbolCount = 0;

for (const encoding of ['json', 'gzip', 'protobuf']) {
  test(`${encoding}: every depth's book is the model's at every seq`, async () => {
    for (const seed of [1, 7, 42]) {
      // Each case its own symbol, so seqs start at 1.
      const symbol = `P${symbolCount++}`;
      const channels = Object.fromEntries(Object.entries(CHANNELS).map(([c, d]) => [c.replace('book:P', `book:${symbol}`), d]));
      const client = await connect(relay.url, { channels: Object.keys(channels), encoding, backoff: fastBackoff });
      const all = updates(seed, 40);
      const states = model(all);
      await publish(all.map((u) => line(u).replace('"symbol":"P"', `"symbol":"${symbol}"`)));
      const at = Object.fromEntries(Object.keys(channels).map((c) => [c, 0]));
      for await (const item of client) {
        assert.notEqual(item.type, 'book_resync', `no resync against a healthy relay: ${JSON.stringify(item)}`);
        if (item.type !== 'book') continue;
        const want = states[item.seq - 1][item.channel.replace(`book:${symbol}`, 'book:P')];
        assert.deepEqual({ bids: item.bids, asks: item.asks, checksum: item.checksum }, want, `${item.channel} seq ${item.seq} (seed ${seed})`);
        at[item.channel] = item.seq;
        if (Object.values(at).every((s) => s === all.length)) break;
      }
      client.close?.();
    }
  });
}

test('decimal order is exact, whatever the spelling', () => {
  const sorted = ['10', '9.99', '-1', '0.001', '-0.5', '100.5', '0.01'].sort(compareDecimal);
  assert.deepEqual(sorted, ['-1', '-0.5', '0.001', '0.01', '9.99', '10', '100.5']);
});

test('the dashboard book panel shows the book live, in headless Chromium', async () => {
  const browser = await launchChromium();
  try {
    await publish([line({ snapshot: true, bids: [[9990, 1500], [9980, 2000]], asks: [[10010, 1000]] }).replace('"symbol":"P"', '"symbol":"PANEL"')]);
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://${relay.http}/?book=PANEL`);
    await page.waitForFunction(() => window.bookPanel?.seq === 1, null, { timeout: 15000 });
    await publish([line({ snapshot: false, bids: [[9990, 0]], asks: [[10020, 3000]] }).replace('"symbol":"P"', '"symbol":"PANEL"')]);
    await page.waitForFunction(() => window.bookPanel?.seq === 2, null, { timeout: 15000 });
    const shown = await page.evaluate(() => ({
      seq: document.getElementById('book-seq').textContent,
      rows: [...document.querySelectorAll('#book tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)),
      panel: window.bookPanel,
    }));
    assert.equal(shown.seq, '2');
    assert.deepEqual(shown.rows, [['ask', '100.2', '3'], ['ask', '100.1', '1'], ['bid', '99.8', '2']]);
    assert.equal(shown.panel.checksum, crc('99.8:2|100.1:1|100.2:3'));
    assert.equal(shown.panel.resyncs, 0);
    assert.deepEqual(errors, []);
    await waitFor('no page errors', () => errors.length === 0, 100);
  } finally {
    await browser.close();
  }
});
