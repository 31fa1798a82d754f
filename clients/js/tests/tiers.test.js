// Rate tiers against the real relay binary: a tier subscription beside the raw one of the same
// symbol, in json and protobuf, and across cut connections. The raw stream keeps every seq; the
// tier's frames chain (from_seq = the last frame's seq + 1) and no gap is reported that is not
// one (docs/PROTOCOL.md, "Rate tiers").

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect, SeqCheck } from '../tickrelay.js';
import { Relay, Proxy, Tracker, readUntil, fastBackoff, WAIT_MS } from './support.js';

/** The relay's shortest default tier, so that a test sees many frames in a second. */
const TIER = '100ms';

/** Once both streams of `symbol` reached `last`: the raw stream delivered every seq once, the
 * tier's frames chained from seq 1 to `last` (the tracker checked each step) and counted every
 * trade once, and nothing was reported missing. */
function check(tracker, symbol, last) {
  assert.deepEqual(tracker.seqs.get(symbol).map(([s]) => s), Array.from({ length: last }, (_, i) => i + 1), 'the raw stream, seq by seq');
  const frames = tracker.frames.get(`${symbol}@${TIER}`);
  const shown = JSON.stringify(frames);
  assert.equal(frames[0][0], 1, `the first frame stands for the first tick: ${shown}`);
  assert.ok(frames.length > 1, `several frames: ${shown}`);
  for (let i = 1; i < frames.length; i++) assert.equal(frames[i][0], frames[i - 1][1] + 1, `from_seq chains: ${shown}`);
  assert.equal(frames.reduce((sum, [, , trades]) => sum + trades, 0), last, `every trade counted once: ${shown}`);
  assert.deepEqual(tracker.gaps, []);
  assert.deepEqual(tracker.resets, []);
  assert.deepEqual(tracker.errors, []);
}

const tick = (seq) => ({ type: 'tick', symbol: 'A', seq, kind: 'trade', ts_ns: seq, recv_ns: seq });
const frame = (fromSeq, seq) => ({ ...tick(seq), tier: '1s', from_seq: fromSeq, trades: seq - fromSeq + 1, volume: 1 });

function run(check, items) {
  const out = [];
  for (const m of items) check.item(m, 'symbol', m.symbol, out);
  return out;
}

describe('SeqCheck on rate tiers', () => {
  test('tier frames chain on from_seq, apart from the raw stream', () => {
    const check = new SeqCheck();
    const input = [tick(1), frame(1, 1), tick(2), tick(3), frame(2, 3), tick(4), frame(4, 9)];
    assert.deepEqual(run(check, input), input, 'no gap, nothing dropped');
    assert.deepEqual(check.resumePositions(), [['A', 3], ['A@1s', 9]]);
  });

  test('a frame past the next seq is a gap of its tier; an overlapping one passes', () => {
    const out = run(new SeqCheck(), [frame(1, 4), frame(8, 9), frame(5, 12)]);
    assert.deepEqual(out[1], { type: 'gap', symbol: 'A', tier: '1s', from: 5, to: 7, reason: 'skipped' });
    assert.deepEqual(out.slice(2), [frame(8, 9), frame(5, 12)]);
  });

  test('a relay gap naming a tier moves only that tier', () => {
    const check = new SeqCheck();
    const out = run(check, [tick(1), frame(1, 1)]);
    check.gap('symbol', 'A', 2, 5, 'relay_conflated', out, '1s');
    out.push(...run(check, [frame(6, 8), tick(2)]));
    assert.deepEqual(out.slice(2), [{ type: 'gap', symbol: 'A', tier: '1s', from: 2, to: 5, reason: 'relay_conflated' }, frame(6, 8), tick(2)]);
  });
});

describe('rate tiers against a relay', () => {
  let relay;
  before(async () => { relay = await Relay.start(); });
  after(async () => { await relay.stop(); });

  for (const encoding of ['json', 'protobuf']) {
    test(`${encoding}: a channel tier beside the channel is followed apart`, async () => {
      const channel = `news-${encoding}`;
      const client = await connect(relay.url, { channels: [channel, `${channel}@${TIER}`], encoding, backoff: fastBackoff });
      const raw = [];
      const frames = [];
      const other = [];
      try {
        const [host, port] = relay.ingest.split(':');
        const socket = net.connect(Number(port), host);
        await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
        const feed = (async () => {
          for (let i = 1; i <= 60; i++) {
            await new Promise((resolve, reject) => socket.write(`{"channel":"${channel}","data":{"i":${i}},"ts_ns":${i}}\n`, (e) => (e ? reject(e) : resolve())));
            await new Promise((r) => setTimeout(r, 10));
          }
          await new Promise((resolve) => socket.end(resolve));
        })();
        const deadline = Date.now() + WAIT_MS;
        while (raw.at(-1) !== 60 || frames.at(-1)?.[1] !== 60) {
          let timer;
          const item = await Promise.race([
            client.next(),
            new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: raw ${raw}, frames ${JSON.stringify(frames)}`)), Math.max(0, deadline - Date.now())); }),
          ]).finally(() => clearTimeout(timer));
          if (item.type === 'event' && item.tier) {
            assert.equal(item.tier, TIER);
            frames.push([item.from_seq, item.seq]);
          } else if (item.type === 'event') {
            raw.push(item.seq);
          } else if (item.type !== 'connected') {
            other.push(item);
          }
        }
        await feed;
        assert.deepEqual(raw, Array.from({ length: 60 }, (_, i) => i + 1), 'the channel, seq by seq');
        assert.equal(frames[0][0], 1, JSON.stringify(frames));
        assert.ok(frames.length > 1, JSON.stringify(frames));
        for (let i = 1; i < frames.length; i++) assert.equal(frames[i][0], frames[i - 1][1] + 1, `from_seq chains: ${JSON.stringify(frames)}`);
        assert.deepEqual(other, []);
      } finally {
        client.close();
      }
    });

    test(`${encoding}: a tier beside the raw stream is followed apart`, async () => {
      const symbol = `TIER-${encoding}`;
      const tier = `${symbol}@${TIER}`;
      const client = await connect(relay.url, { symbols: [symbol, tier], encoding, backoff: fastBackoff });
      const tracker = new Tracker();
      let typed;
      try {
        const feed = relay.publish(symbol, 300, { batch: 5, pauseMs: 10 });
        await readUntil(client, tracker, `${symbol} and ${tier} seq 300`, (t) => t.last.get(symbol) === 300 && t.last.get(tier) === 300, (_, item) => {
          if (item.type === 'tick' && item.tier) typed = item;
        });
        await feed;
        check(tracker, symbol, 300);
        assert.equal(typed.tier, TIER);
        assert.ok(typed.volume > 0 && typed.high !== undefined && typed.low !== undefined, JSON.stringify(typed));
        assert.deepEqual(client.positions(), { [symbol]: 300, [tier]: 300 });
      } finally {
        client.close();
      }
    });

    test(`${encoding}: a cut tier resumes where it stopped`, async () => {
      const proxy = await Proxy.start(relay.http);
      const symbol = `TIER-CUT-${encoding}`;
      const tier = `${symbol}@${TIER}`;
      const client = await connect(proxy.url, { symbols: [symbol, tier], encoding, backoff: fastBackoff });
      const tracker = new Tracker();
      try {
        const feed = relay.publish(symbol, 600, { batch: 5, pauseMs: 10 });
        // Each cut after two tier frames of the connection it cuts (of about twelve in the
        // feed), so that the tier has a position to resume.
        let framesHere = 0;
        let cuts = 0;
        await readUntil(client, tracker, `${symbol} and ${tier} seq 600`, (t) => t.last.get(symbol) === 600 && t.last.get(tier) === 600, (_, item) => {
          if (item.type === 'connected') framesHere = 0;
          else if (item.type === 'tick' && item.tier) framesHere++;
          if (framesHere === 2 && cuts < 2) {
            cuts++;
            framesHere = 0;
            proxy.cut();
          }
        });
        await feed;
        assert.equal(cuts, 2);
        assert.equal(tracker.disconnects.length, 2, JSON.stringify(tracker.disconnects));
        check(tracker, symbol, 600);
      } finally {
        client.close();
        await proxy.close();
      }
    });
  }
});
