// A relay that closes with 1001 (going away: it is stopping) or 1012 (service restart) is left
// at once, not after a backoff: the client reconnects after a small jitter only and resumes
// wherever the URL leads now. The backoff here is an hour, so only the immediate reconnect can
// pass within the tests' wait.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../tickrelay.js';
import { Relay, Proxy, Tracker, readUntil, FrameEncoder, ScriptServer, msg } from './support.js';

const anHour = { initialMs: 3600000, maxMs: 3600000 };

test('a relay going away (1001) is left at once for the next one, and resumed', async () => {
  const stopping = await Relay.start();
  const next = await Relay.start();
  const balancer = await Proxy.start(stopping.http);
  const client = await connect(balancer.url, { symbols: ['A'], backoff: anHour });
  const tracker = new Tracker();
  const closes = [];
  try {
    await stopping.publish('A', 3, { tag: 1 });
    await readUntil(client, tracker, 'A seq 3', (t) => t.last.get('A') === 3);
    // The other relay has its own history of A (5 ticks); new connections now go there.
    await next.publish('A', 5, { tag: 2 });
    await next.waitSeq('A', 5);
    balancer.retarget(next.http);
    await stopping.stop('SIGTERM');
    await readUntil(client, tracker, "the next relay's A seq 5", (t) => t.last.get('A') === 5, (_, item) => {
      if (item.type === 'disconnected') closes.push(item.code);
    });
    assert.deepEqual(closes, [1001]);
    assert.equal(tracker.connects, 2);
    // Resumed with the stopping relay's epoch: the next relay answers a reset and its newest.
    assert.deepEqual(tracker.resets.map((r) => [r.last_seq, r.seq]), [[3, 5]]);
    assert.deepEqual(tracker.seqs.get('A'), [[5, 2e9 + 5]]);
  } finally {
    client.close();
    await balancer.close();
    await next.stop();
    await stopping.stop();
  }
});

test('a service restart close (1012) is followed at once by a resume', async () => {
  const frames = new FrameEncoder('json');
  const first = [msg.welcome(1), msg.tick('A', 1), msg.tick('A', 2)].map((m) => frames.frame([m]));
  first.push({ close: 1012, reason: 'service restart' });
  // The resume from 1: seq 2 again (the same tick, dropped as the overlap), then 3.
  const second = [msg.welcome(2), msg.tick('A', 2), msg.tick('A', 3)].map((m) => frames.frame([m]));
  const server = await ScriptServer.start([first, second]);
  const client = await connect(server.url, { symbols: ['A'], backoff: anHour });
  const shape = [];
  try {
    await readUntil(client, new Tracker(), 'tick 3 after a reconnect at once', () => shape.at(-1) === 'tick 3', (_, i) => {
      shape.push(`${i.type} ${i.type === 'connected' ? i.session : i.type === 'disconnected' ? i.code : i.seq}`);
    });
    assert.deepEqual(shape, ['connected 1', 'tick 1', 'tick 2', 'disconnected 1012', 'connected 2', 'tick 3']);
    assert.match(server.requests[1], /resume=A:1/);
    assert.match(server.requests[1], /epoch=7/);
  } finally {
    client.close();
    await server.close();
  }
});
