// Rate tiers against the real relay binary: a tier subscription beside the raw one of the same
// symbol, in json and protobuf, and across cut connections. The raw stream keeps every seq; the
// tier's frames chain (from_seq = the last frame's seq + 1) and no gap is reported that is not
// one (docs/PROTOCOL.md, "Rate tiers").

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../tickrelay.js';
import { Relay, Proxy, Tracker, readUntil, fastBackoff } from './support.js';

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

describe('rate tiers against a relay', () => {
  let relay;
  before(async () => { relay = await Relay.start(); });
  after(async () => { await relay.stop(); });

  for (const encoding of ['json', 'protobuf']) {
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
        const feed = relay.publish(symbol, 400, { batch: 5, pauseMs: 10 });
        // Each cut after three tier frames of the connection it cuts, so that the tier has a
        // position to resume.
        let framesHere = 0;
        let cuts = 0;
        await readUntil(client, tracker, `${symbol} and ${tier} seq 400`, (t) => t.last.get(symbol) === 400 && t.last.get(tier) === 400, (_, item) => {
          if (item.type === 'connected') framesHere = 0;
          else if (item.type === 'tick' && item.tier) framesHere++;
          if (framesHere === 3 && cuts < 2) {
            cuts++;
            framesHere = 0;
            proxy.cut();
          }
        });
        await feed;
        assert.equal(cuts, 2);
        assert.equal(tracker.disconnects.length, 2, JSON.stringify(tracker.disconnects));
        check(tracker, symbol, 400);
      } finally {
        client.close();
        await proxy.close();
      }
    });
  }
});
