// One message the client cannot read never stops its stream: a scripted WebSocket server
// (support.js) sends the exact frames, since a relay never writes them: event data nested
// 20,000 levels deep, an event that is not JSON, a garbage frame. Each is an item (the
// undecodable ones counted at their seq when they name it), and the next message is read:
// no reconnect, no gap.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../tickrelay.js';
import { FrameEncoder, ScriptServer, msg, fastBackoff, readUntil, Tracker } from './support.js';

const deep = `${'['.repeat(20000)}${']'.repeat(20000)}`;

for (const encoding of ['json', 'protobuf', 'gzip']) {
  test(`${encoding}: undecodable messages are items counted at their seq, and the stream goes on`, async () => {
    const frames = new FrameEncoder(encoding);
    const script = [
      msg.welcome(1),
      msg.event('news', 1, '{"n":1}'),
      msg.event('news', 2, deep),
      // JSON: the text does not parse; protobuf: the event's data bytes are not JSON.
      msg.raw('{"type":"event","channel":"news","seq":3,"ts_ns":3,"data":{"a":}}', msg.event('news', 3, '{"a":').proto),
      msg.raw('{"type":"event","channel":}', [0xff, 0xff, 0xff]),
      msg.tick('A', 1),
      msg.event('news', 4, '{"n":4}'),
    ].map((m) => frames.frame([m]));
    const server = await ScriptServer.start([script]);
    // The script sends unbatched frames (one message each).
    const client = await connect(server.url, { symbols: ['A'], channels: ['news'], encoding, batch: false, backoff: fastBackoff });
    const tracker = new Tracker();
    const items = [];
    try {
      await readUntil(client, tracker, 'event 4', () => items.some((i) => i.type === 'event' && i.seq === 4), (_, item) => {
        if (item.type === 'disconnected') assert.fail(`no reconnect on a bad message: ${item.reason}`);
        items.push(item);
      });
      const shape = items.map((i) => [i.type, i.symbol ?? i.channel, i.seq].filter((x) => x !== undefined).join(' '));
      assert.deepEqual(shape, ['connected', 'event news 1', 'event news 2', 'undecodable news 3', 'undecodable', 'tick A 1', 'event news 4']);
      let data = items[2].data;
      let levels = 0;
      while (Array.isArray(data) && data.length) { data = data[0]; levels++; }
      assert.deepEqual([levels + 1, data], [20000, []], '20,000 levels delivered');
      assert.equal(server.requests.length, 1, 'one connection');
    } finally {
      client.close();
      await server.close();
    }
  });
}
