// The JS client in Node against the real relay binary: cut and frozen connections, relay
// restarts (SIGTERM and SIGKILL), a replay ring too short, subscription changes, each
// checked for exactly-once-or-gap delivery.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, SeqCheck, decodeServerMessage } from '../tickrelay.js';
import { Relay, Proxy, Tracker, readUntil, fastBackoff, waitFor } from './support.js';

describe('against a relay', () => {
  let relay;
  before(async () => { relay = await Relay.start(); });
  after(async () => { await relay.stop(); });

  for (const encoding of ['json', 'gzip', 'protobuf']) {
    test(`${encoding}: cuts mid-stream lose nothing`, async () => {
      const proxy = await Proxy.start(relay.http);
      const symbol = `CUT-${encoding}`;
      const client = await connect(proxy.url, { symbols: [symbol], encoding, backoff: fastBackoff });
      const tracker = new Tracker();
      try {
        const feed = relay.publish(symbol, 1500, { batch: 10, pauseMs: 3 });
        // Three cuts, each after 150 items of the connection it cuts: counting items overall
        // could cut while the client was between connections (its backlog still being read).
        let onThisConnection = 0;
        let cuts = 0;
        await readUntil(client, tracker, `${symbol} seq 1500`, (t) => t.last.get(symbol) === 1500, (_, item) => {
          onThisConnection = item.type === 'connected' ? 0 : onThisConnection + 1;
          if (onThisConnection === 150 && cuts < 3) {
            cuts++;
            proxy.cut();
          }
        });
        await feed;
        assert.equal(tracker.disconnects.length, 3, JSON.stringify(tracker.disconnects));
        assert.deepEqual(tracker.gaps, []);
        assert.deepEqual(tracker.resets, []);
        assert.deepEqual(tracker.seqs.get(symbol).map(([s]) => s), Array.from({ length: 1500 }, (_, i) => i + 1));
      } finally {
        client.close();
        await proxy.close();
      }
    });
  }

  test('a silent connection is given up and resumed', async () => {
    const proxy = await Proxy.start(relay.http);
    const client = await connect(proxy.url, { symbols: ['SILENT'], livenessMs: 2000, backoff: fastBackoff });
    const tracker = new Tracker();
    try {
      await relay.publish('SILENT', 50);
      await readUntil(client, tracker, 'SILENT seq 50', (t) => t.last.get('SILENT') === 50);
      proxy.freeze();
      await relay.publish('SILENT', 50);
      await readUntil(client, tracker, 'SILENT seq 100 after the frozen connection is given up', (t) => t.last.get('SILENT') === 100);
      assert.equal(tracker.disconnects.length, 1, JSON.stringify(tracker.disconnects));
      assert.match(tracker.disconnects[0], /no data/);
      assert.deepEqual(tracker.gaps, []);
    } finally {
      client.close();
      await proxy.close();
    }
  });

  test('subscriptions change while running, and a resubscribe resumes', async () => {
    const client = await connect(relay.url, { symbols: ['SUB-A'], backoff: fastBackoff });
    const tracker = new Tracker();
    try {
      await relay.publish('SUB-A', 3);
      await readUntil(client, tracker, 'SUB-A seq 3', (t) => t.last.get('SUB-A') === 3);
      // Control messages are handled in order: once SUB-C arrives, SUB-A is unsubscribed.
      client.unsubscribe(['SUB-A']);
      client.subscribe(['SUB-C']);
      await relay.publish('SUB-C', 1);
      await readUntil(client, tracker, 'SUB-C seq 1', (t) => t.last.get('SUB-C') === 1);
      await relay.publish('SUB-A', 5);
      await relay.waitSeq('SUB-A', 8);
      await relay.publish('SUB-C', 1);
      await readUntil(client, tracker, 'SUB-C seq 2', (t) => t.last.get('SUB-C') === 2);
      assert.equal(tracker.last.get('SUB-A'), 3, 'no tick of SUB-A after unsubscribing');
      client.subscribe(['SUB-A']);
      await readUntil(client, tracker, 'SUB-A seq 8', (t) => t.last.get('SUB-A') === 8);
      assert.deepEqual(tracker.seqs.get('SUB-A').map(([s]) => s), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(tracker.gaps, []);
      assert.equal(client.positions()['SUB-A'], 8);
    } finally {
      client.close();
    }
  });
});

test('a wildcard with more positions than maxResume reconnects on snapshots and gaps', async () => {
  const relay = await Relay.start();
  const proxy = await Proxy.start(relay.http);
  const client = await connect(proxy.url, { symbols: ['*'], maxResume: 2, backoff: fastBackoff });
  const tracker = new Tracker();
  const symbols = ['W-A', 'W-B', 'W-C'];
  const allAt = (seq) => (t) => symbols.every((s) => t.last.get(s) === seq);
  try {
    for (const s of symbols) await relay.publish(s, 3);
    await readUntil(client, tracker, 'W-A, W-B and W-C at seq 3', allAt(3));
    proxy.down = true;
    proxy.cut();
    for (const s of symbols) { await relay.publish(s, 2); await relay.waitSeq(s, 5); }
    proxy.down = false;
    await readUntil(client, tracker, 'W-A, W-B and W-C at seq 5', allAt(5));
    assert.equal(tracker.connects, 2);
    assert.deepEqual(tracker.gaps.map((g) => [g.symbol, g.from, g.to]).sort(), symbols.map((s) => [s, 4, 4]));
  } finally {
    client.close();
    await proxy.close();
    await relay.stop();
  }
});

test('a relay restart is a reset, never a silent splice', async () => {
  const relay = await Relay.start();
  const proxy = await Proxy.start(relay.http);
  const client = await connect(proxy.url, { symbols: ['R'], backoff: fastBackoff });
  const tracker = new Tracker();
  try {
    await relay.publish('R', 200, { tag: 1 });
    await readUntil(client, tracker, 'R seq 200', (t) => t.last.get('R') === 200);
    // The new history passes the client's position before the client is back.
    proxy.down = true;
    await relay.restart('SIGTERM');
    await relay.publish('R', 300, { tag: 2 });
    await relay.waitSeq('R', 300);
    proxy.down = false;
    await readUntil(client, tracker, 'a reset, then R seq 300 of the new history', (t) => t.resets.length === 1 && t.last.get('R') === 300);
    // The client resumes with its epoch; the relay answers reset + the new history's newest.
    assert.deepEqual([tracker.resets[0].last_seq, tracker.resets[0].seq], [200, 300]);
    assert.ok(tracker.seqs.get('R').every(([, ts]) => Math.floor(ts / 1e9) === 2), 'every tick after the reset is of the new history');
    assert.equal(tracker.seqs.get('R').length, 1);
    // A crash (SIGKILL), and the client back before the new history has a tick: seqs from 1.
    await relay.restart('SIGKILL');
    await readUntil(client, tracker, 'a reconnect', (t) => t.connects === 3);
    await relay.publish('R', 20, { tag: 3 });
    await readUntil(client, tracker, 'a second reset, then R seq 20', (t) => t.resets.length === 2 && t.last.get('R') === 20);
    assert.deepEqual([tracker.resets[1].last_seq, tracker.resets[1].seq], [300, 1]);
    assert.deepEqual(tracker.gaps, []);
  } finally {
    client.close();
    await proxy.close();
    await relay.stop();
  }
});

test('a resume older than the replay ring is an explicit gap', async () => {
  const relay = await Relay.start(['--replay-depth', '10']);
  const proxy = await Proxy.start(relay.http);
  const client = await connect(proxy.url, { symbols: ['OLD'], backoff: fastBackoff });
  const tracker = new Tracker();
  try {
    await relay.publish('OLD', 5);
    await readUntil(client, tracker, 'OLD seq 5', (t) => t.last.get('OLD') === 5);
    proxy.down = true;
    proxy.cut();
    await relay.publish('OLD', 100);
    await relay.waitSeq('OLD', 105);
    proxy.down = false;
    const types = [];
    await readUntil(client, tracker, 'OLD seq 105', (t) => t.last.get('OLD') === 105, (_, item) => types.push(item.type));
    assert.equal(tracker.gaps.length, 1);
    const { from, to, reason } = tracker.gaps[0];
    assert.deepEqual({ from, to, reason }, { from: 6, to: 104, reason: 'not_replayable' });
    assert.equal(types.at(-1), 'snapshot', 'the newest value follows the gap');
  } finally {
    client.close();
    await proxy.close();
    await relay.stop();
  }
});

test('a slow reader gets conflation and gaps, never a silent hole', async () => {
  const relay = await Relay.start();
  const client = await connect(relay.url, { symbols: ['SLOW'], buffer: 8 });
  const tracker = new Tracker();
  try {
    await relay.publish('SLOW', 2000);
    // Nobody reads: 8 items fill the buffer, then conflation holds a gap and the newest tick.
    await waitFor('8 items, a gap and the newest tick to be waiting', () => client.backlog() === 10);
    await readUntil(client, tracker, 'SLOW seq 2000', (t) => t.last.get('SLOW') === 2000);
    assert.ok(tracker.gaps.length > 0, 'a slow reader is told what it skipped');
    assert.ok(tracker.items < 2000, `conflated: ${tracker.items} items`);
  } finally {
    client.close();
    await relay.stop();
  }
});

test('a slow reader can ask for an error instead', async () => {
  const relay = await Relay.start();
  const client = await connect(relay.url, { symbols: ['ERR'], buffer: 8, slowConsumer: 'error' });
  const tracker = new Tracker();
  try {
    await relay.publish('ERR', 100);
    await waitFor('8 items and the error to be waiting', () => client.backlog() === 9);
    await readUntil(client, tracker, '8 items', (t) => t.items === 8);
    await assert.rejects(client.next(), { code: 'consumer_too_slow' });
    assert.equal(await client.next(), undefined, 'then the stream ends');
    assert.equal(client.positions().ERR, tracker.last.get('ERR'));
  } finally {
    client.close();
    await relay.stop();
  }
});

test('the first connection failing rejects connect()', async () => {
  await assert.rejects(connect('ws://127.0.0.1:1/ws', { symbols: ['A'] }), { code: 'connect_failed' });
});

test('the seq check: overlap dropped, same seq from another history reset, epoch change reset', () => {
  const s = new SeqCheck();
  const tick = (seq, recv) => ({ type: 'tick', symbol: 'A', seq, ts_ns: seq, recv_ns: recv });
  const out = [];
  for (const t of [tick(1, 1), tick(2, 2), tick(2, 2), tick(3, 3), tick(3, 99)]) s.item(t, 'symbol', 'A', out);
  assert.deepEqual(out.map((i) => `${i.type}:${i.seq}`), ['tick:1', 'tick:2', 'tick:3', 'reset:3', 'tick:3']);
  assert.deepEqual(s.resumePositions(), [['A', 2]]);
  s.welcome('e1');
  s.welcome('e2');
  const after = [];
  s.item(tick(4, 4), 'symbol', 'A', after);
  assert.deepEqual(after.map((i) => i.type), ['reset', 'tick']);
  assert.equal(after[0].epoch, 'e2');
});

test('protobuf decoding gives the JSON shape', () => {
  // ServerMessage{ tick: Tick{ symbol:"A", kind:TRADE, price:1.5, ts_ns:7, seq:3, recv_ns:9 } }
  const tick = [0x0a, 1, 0x41, 0x10, 1, 0x19, ...new Uint8Array(new Float64Array([1.5]).buffer),
    0x51, 7, 0, 0, 0, 0, 0, 0, 0, 0x58, 3, 0x61, 9, 0, 0, 0, 0, 0, 0, 0];
  const frame = new Uint8Array([0x12, tick.length, ...tick]);
  assert.deepEqual(decodeServerMessage(frame), { type: 'tick', symbol: 'A', seq: 3, kind: 'trade', ts_ns: 7, recv_ns: 9, price: 1.5 });
});
