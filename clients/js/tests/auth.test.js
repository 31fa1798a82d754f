// The JS client against a relay with auth on (HS256 tokens minted here): a token reads its
// user's private channel as typed events across a cut, in every encoding; a refused or
// expiring token ends the stream with the relay's code instead of a reconnect loop. And the
// heartbeat option: 0 turns the relay's heartbeats off while liveness pings keep going.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, TickrelayError } from '../tickrelay.js';
import { Relay, Proxy, fastBackoff, waitFor, WAIT_MS } from './support.js';

const SECRET = 'js-client-test-secret-0123456789abcdef-01';

/** An HS256 JWT for `sub`, running out `expInS` seconds from now. */
export function mint(sub, expInS, secret = SECRET) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, aud: 'tickrelay', exp: Math.floor(Date.now() / 1000) + expInS })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** Publishes events `{"n":N}` of `channel` as NDJSON lines on the relay's ingest port. */
async function publishEvents(relay, channel, from, to) {
  const [host, port] = relay.ingest.split(':');
  const socket = net.connect(Number(port), host);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  let text = '';
  for (let n = from; n <= to; n++) text += `{"channel":"${channel}","data":{"n":${n}}}\n`;
  await new Promise((resolve, reject) => socket.write(text, (e) => (e ? reject(e) : resolve())));
  await new Promise((resolve) => socket.end(resolve));
}

/** Reads items into `items` until `done(items)`; fails after WAIT_MS or on an error item. */
async function readUntil(client, items, what, done) {
  const deadline = Date.now() + WAIT_MS;
  while (!done(items)) {
    let timer;
    const item = await Promise.race([
      client.next(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(items)}`)), Math.max(0, deadline - Date.now())); }),
    ]).finally(() => clearTimeout(timer));
    if (item === undefined) throw new Error(`the stream ended while waiting for ${what}`);
    if (item.type === 'error') throw new Error(`the relay answered an error: ${JSON.stringify(item)}`);
    items.push(item);
  }
}

const eventsOf = (items, channel) => items.filter((i) => i.type === 'event' && i.channel === channel);

/** A relay verifying HS256 tokens of SECRET for audience `tickrelay`, with `extra` flags;
 * `stop()` stops it and removes the secret's file. */
async function securedRelay(extra) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tickrelay-js-auth-'));
  const secret = path.join(dir, 'secret');
  writeFileSync(secret, SECRET);
  const relay = await Relay.start(['--jwt-secret-file', secret, '--jwt-audience', 'tickrelay', ...extra]);
  return {
    relay,
    stop: async () => {
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A token's client reads its user channel (and a public one) through a proxy that is cut
 * while events happen: each event once, in order, nothing of another user's channel. */
async function privateChannelAcrossACut(relay, encoding) {
  const proxy = await Proxy.start(relay.http);
  const user = `alice-${encoding}`;
  const mine = `user:${user}`;
  const news = `news-${encoding}`;
  const client = await connect(proxy.url, { channels: [mine, news], token: mint(user, 3600), encoding, backoff: fastBackoff });
  const witness = await connect(relay.url, { channels: [mine], token: mint(user, 3600) });
  try {
    await publishEvents(relay, mine, 1, 5);
    await publishEvents(relay, `user:bob-${encoding}`, 1, 3);
    await publishEvents(relay, news, 1, 2);
    const items = [];
    await readUntil(client, items, 'the first events', (l) => eventsOf(l, mine).length === 5 && eventsOf(l, news).length === 2);
    // Events 6..9 happen while the client is away (the witness sees them land).
    proxy.down = true;
    proxy.cut();
    await publishEvents(relay, mine, 6, 9);
    const seen = [];
    await readUntil(witness, seen, `${mine} event 9 at the witness`, (l) => l.some((i) => i.seq === 9));
    proxy.down = false;
    await readUntil(client, items, `${mine} event 9 after the reconnect`, (l) => eventsOf(l, mine).length === 9);
    assert.deepEqual(eventsOf(items, mine).map((e) => [e.seq, e.data.n]), Array.from({ length: 9 }, (_, i) => [i + 1, i + 1]),
      'every event of the private channel once, in order, its data as published');
    assert.ok(items.every((i) => i.channel !== `user:bob-${encoding}`), 'another user\'s channel never arrives');
    assert.equal(items.filter((i) => i.type === 'connected').length, 2);
    assert.ok(items.every((i) => i.type !== 'gap'), `no gap: ${JSON.stringify(items.filter((i) => i.type === 'gap'))}`);
  } finally {
    client.close();
    witness.close();
    await proxy.close();
  }
}

describe('against a relay with auth', () => {
  let relay;
  let stop;
  before(async () => { ({ relay, stop } = await securedRelay(['--jwt-leeway', '0s'])); });
  after(() => stop());

  for (const encoding of ['json', 'gzip', 'protobuf']) {
    test(`${encoding}: a token reads its user channel as typed events across a cut`, () => privateChannelAcrossACut(relay, encoding));
  }

  test('a refused token rejects connect() with the relay\'s code', async () => {
    for (const [token, code] of [[mint('alice', 3600, 'another-secret-of-the-same-length-0123456'), 'invalid_token'], [mint('alice', -60), 'token_expired']]) {
      await assert.rejects(connect(relay.url, { symbols: ['A'], token, backoff: fastBackoff }), (e) => {
        assert.ok(e instanceof TickrelayError, String(e));
        assert.equal(e.code, code);
        return true;
      });
    }
  });

  test('a token running out ends the stream with token_expired, without reconnecting', async () => {
    const client = await connect(relay.url, { symbols: ['A'], token: mint('carol', 2), backoff: fastBackoff });
    const items = [];
    let timer;
    const failure = await Promise.race([
      (async () => {
        for (;;) {
          try {
            const item = await client.next();
            if (item === undefined) return new Error('the stream ended without an error');
            items.push(item);
          } catch (e) {
            return e;
          }
        }
      })(),
      new Promise((resolve) => { timer = setTimeout(() => resolve(new Error('the stream went on past the token')), WAIT_MS); }),
    ]).finally(() => clearTimeout(timer));
    assert.ok(failure instanceof TickrelayError, String(failure));
    assert.equal(failure.code, 'token_expired');
    assert.deepEqual(items.map((i) => i.type), ['connected', 'error'], 'no disconnected/connected: no reconnect');
    assert.equal(await client.next(), undefined, 'the stream has ended');
  });
});

describe('against a relay with auth that admits anonymous clients', () => {
  let relay;
  let stop;
  before(async () => { ({ relay, stop } = await securedRelay(['--allow-anonymous'])); });
  after(() => stop());

  // Welcomed before its in-band token is read, the client subscribes its channels after it.
  test('a token still reads its user channel', () => privateChannelAcrossACut(relay, 'json'));

  test('a refused token still ends the stream with its code', async () => {
    await assert.rejects(connect(relay.url, { symbols: ['A'], token: mint('alice', -60), backoff: fastBackoff }).then(async (client) => {
      // Welcomed as anonymous first: the refusal comes as the stream's error.
      for (;;) if ((await client.next()) === undefined) throw new Error('ended without an error');
    }), (e) => e instanceof TickrelayError && e.code === 'token_expired');
  });
});

describe('heartbeats', () => {
  let relay;
  before(async () => { relay = await Relay.start(); });
  after(async () => { await relay.stop(); });

  /** A WebSocket that records what the client sends and which frames arrive. */
  const recording = (log) => class extends WebSocket {
    constructor(url) {
      super(url);
      this.addEventListener('message', (e) => { if (typeof e.data === 'string') log.received.push(JSON.parse(e.data)); });
    }

    send(data) {
      log.sent.push(JSON.parse(data));
      super.send(data);
    }
  };

  test('heartbeatMs 0 asks for none, and liveness pings keep a quiet connection', async () => {
    const log = { sent: [], received: [] };
    const client = await connect(relay.url, { symbols: ['QUIET'], heartbeatMs: 0, livenessMs: 600, WebSocket: recording(log) });
    const items = [];
    (async () => { for await (const item of client) items.push(item); })();
    try {
      // Three liveness periods: the client probes with pings and the relay's pongs keep it up.
      await waitFor('three pongs', () => log.received.filter((m) => m.type === 'pong').length >= 3);
      assert.deepEqual(log.sent.filter((m) => m.op !== 'ping'), [], 'nothing but pings sent');
      assert.ok(log.received.every((m) => m.type !== 'heartbeat'), 'no heartbeat from the relay');
      assert.deepEqual(items.map((i) => i.type), ['connected'], 'no reconnect');
    } finally {
      client.close();
    }
  });

  test('heartbeatMs asks for heartbeats at that interval', async () => {
    const log = { sent: [], received: [] };
    const client = await connect(relay.url, { symbols: ['BEAT'], heartbeatMs: 150, livenessMs: 3000, WebSocket: recording(log) });
    try {
      await waitFor('three heartbeats', () => log.received.filter((m) => m.type === 'heartbeat').length >= 3);
      assert.deepEqual(log.sent.filter((m) => m.op === 'heartbeat'), [{ op: 'heartbeat', interval_ms: 150 }]);
    } finally {
      client.close();
    }
  });
});
