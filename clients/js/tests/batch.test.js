// Several messages per frame (`?batch=on`), as the relay will send them: frames built by a
// scripted server (support.js) in each encoding (json: lines of one text frame; protobuf: one
// ServerBatch per binary frame; gzip: sync-flushed pieces inflating to lines). Every message is
// delivered in order and checked as if it had come alone: a duplicate dropped, a skipped seq
// named, a bad message an item among the others (in gzip, the stream picks up at the next line).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, BATCH_BY_DEFAULT } from '../tickrelay.js';
import { FrameEncoder, ScriptServer, msg, fastBackoff, readUntil, Tracker } from './support.js';

for (const encoding of ['json', 'protobuf', 'gzip']) {
  test(`${encoding}: batched frames deliver every message in order with the same checks`, async () => {
    const frames = new FrameEncoder(encoding, true);
    const script = [
      // The welcome shares its frame with what follows it.
      frames.frame([msg.welcome(1), msg.tick('A', 1), msg.tick('A', 2)]),
      frames.frame([msg.tick('A', 3), msg.tick('A', 3), msg.raw('{"type":"tick","symbol":', [0xff, 0xff, 0xff]), msg.tick('A', 5), msg.event('news', 1, '{"n":1}')]),
      frames.frame([msg.tick('A', 6)]),
    ];
    const server = await ScriptServer.start([script]);
    const client = await connect(server.url, { symbols: ['A'], channels: ['news'], encoding, batch: true, backoff: fastBackoff });
    const shape = [];
    try {
      await readUntil(client, new Tracker(), 'tick 6', () => shape.at(-1) === 'tick 6', (_, i) => {
        shape.push(i.type === 'gap' ? `gap ${i.from}..${i.to} ${i.reason}` : [i.type, i.seq, i.data && JSON.stringify(i.data)].filter((x) => x !== undefined).join(' '));
      });
      assert.deepEqual(shape, ['connected', 'tick 1', 'tick 2', 'tick 3', 'undecodable', 'gap 4..4 skipped', 'tick 5', 'event 1 {"n":1}', 'tick 6']);
      assert.equal(server.requests.length, 1);
      assert.match(server.requests[0], /&batch=on/);
    } finally {
      client.close();
      await server.close();
    }
  });
}

test('batches are asked for by default exactly when BATCH_BY_DEFAULT says so', async () => {
  const server = await ScriptServer.start([[new FrameEncoder('json').frame([msg.welcome(1)])]]);
  const client = await connect(server.url, { symbols: ['A'] });
  try {
    assert.equal(server.requests[0].includes('batch=on'), BATCH_BY_DEFAULT, server.requests[0]);
  } finally {
    client.close();
    await server.close();
  }
});
