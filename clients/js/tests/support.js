// Real parts for the JS client tests: the relay binary as a child process (restartable on
// the same ports), an NDJSON publisher, a TCP proxy that cuts or freezes connections, and a
// checker of exactly-once-or-gap delivery; and, for bytes no relay sends, a WebSocket server
// of scripted frames. Every wait is bounded and names what it waits for.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
export const WAIT_MS = 20000;

/** The relay binary: $TEST_RELAY_BIN, else target/debug or target/release under the repo root. */
export function relayBinary() {
  const candidates = [process.env.TEST_RELAY_BIN, path.join(repoRoot, 'target/debug/tickrelay'), path.join(repoRoot, 'target/release/tickrelay')];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error('no relay binary: run `cargo build --bin tickrelay` or set TEST_RELAY_BIN');
  return found;
}

/** Resolves when `cond()` is truthy (polled every 10 ms); rejects naming `what` after WAIT_MS. */
export async function waitFor(what, cond, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The relay as a child process on free loopback ports, restartable on the same ports. */
export class Relay {
  static async start(extraArgs = []) {
    const relay = new Relay(extraArgs);
    await relay.launch(['--listen', '127.0.0.1:0', '--ingest-tcp', '127.0.0.1:0', '--ingest-tcp-protobuf', '127.0.0.1:0']);
    return relay;
  }

  constructor(extraArgs) {
    this.extraArgs = extraArgs;
  }

  async launch(addressArgs) {
    const args = [...addressArgs, '--shards', '1', '--drain-timeout', '300ms', '--log', 'warn', ...this.extraArgs];
    const child = spawn(relayBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    // The relay logs (and reports a start-up error) on stderr: keep it for the failure message.
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    this.exited = exited;
    await waitFor('the relay to print its addresses', () => {
      if (child.exitCode !== null) throw new Error(`the relay exited with ${child.exitCode}: ${out}${err}`);
      return /ingest:\s+NDJSON tcp:\/\/(\S+)\s+protobuf tcp:\/\/(\S+)/.test(out);
    });
    this.http = /WebSocket: ws:\/\/([^/\s]+)/.exec(out)[1];
    const [, ingest, ingestProtobuf] = /ingest:\s+NDJSON tcp:\/\/(\S+)\s+protobuf tcp:\/\/(\S+)/.exec(out);
    this.ingest = ingest;
    this.ingestProtobuf = ingestProtobuf;
    await waitFor('the relay to answer /ready with 200', async () => {
      try { return (await fetch(`http://${this.http}/ready`)).status === 200; } catch { return false; }
    });
  }

  get url() {
    return `ws://${this.http}/ws`;
  }

  /** Stops the relay: SIGTERM (clients get close 1001) or SIGKILL (a crash). */
  async stop(signal = 'SIGTERM') {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill(signal);
    let timer;
    await Promise.race([
      this.exited,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the relay did not exit within 10 s')), 10000); }),
    ]).finally(() => clearTimeout(timer));
  }

  /** A fresh relay (a new history: seqs from 1) on the same ports. */
  async restart(signal = 'SIGTERM') {
    await this.stop(signal);
    await this.launch(['--listen', this.http, '--ingest-tcp', this.ingest, '--ingest-tcp-protobuf', this.ingestProtobuf]);
  }

  /** Publishes `count` ticks of `symbol`; `tag` marks the history in ts_ns. */
  async publish(symbol, count, { tag = 1, batch = count, pauseMs = 0 } = {}) {
    const [host, port] = this.ingest.split(':');
    const socket = net.connect(Number(port), host);
    await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    for (let i = 0; i < count;) {
      let text = '';
      for (let j = 0; j < batch && i < count; j++) {
        i++;
        text += `{"symbol":"${symbol}","price":${100 + i / 100},"size":1.0,"ts_ns":${tag * 1e9 + i}}\n`;
      }
      await new Promise((resolve, reject) => socket.write(text, (e) => (e ? reject(e) : resolve())));
      if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    }
    await new Promise((resolve) => socket.end(resolve));
  }

  /** Resolves once the relay's last seq of `symbol` is `seq`. */
  async waitSeq(symbol, seq) {
    await waitFor(`the relay to reach ${symbol} seq ${seq}`, async () => {
      const r = await fetch(`http://${this.http}/price/${symbol}`);
      return r.status === 200 && (await r.json()).seq === seq;
    });
  }
}

/** A TCP proxy in front of the relay: cut() closes, freeze() silences its connections. */
export class Proxy {
  static async start(target) {
    const proxy = new Proxy(target);
    await new Promise((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    proxy.addr = `127.0.0.1:${proxy.server.address().port}`;
    return proxy;
  }

  constructor(target) {
    this.target = target;
    this.pairs = new Set();
    this.frozen = new Set();
    this.down = false;
    this.server = net.createServer((client) => {
      if (this.down) return client.destroy();
      // `target` may change (retarget): new connections go where it says now.
      const [host, port] = this.target.split(':');
      const server = net.connect(Number(port), host);
      const pair = { client, server };
      this.pairs.add(pair);
      client.pipe(server);
      server.pipe(client);
      const close = () => { client.destroy(); server.destroy(); this.pairs.delete(pair); };
      client.on('error', close).on('close', close);
      server.on('error', close).on('close', close);
    });
  }

  get url() {
    return `ws://${this.addr}/ws`;
  }

  /** Sends new connections to `target` (a load balancer moving clients to another relay). */
  retarget(target) {
    this.target = target;
  }

  cut() {
    for (const { client, server } of this.pairs) { client.destroy(); server.destroy(); }
    this.pairs.clear();
  }

  freeze() {
    for (const pair of this.pairs) {
      pair.client.unpipe(pair.server);
      pair.server.unpipe(pair.client);
      pair.client.pause();
      pair.server.pause();
      this.frozen.add(pair); // open, silent, until close()
    }
    this.pairs.clear();
  }

  async close() {
    this.cut();
    for (const { client, server } of this.frozen) { client.destroy(); server.destroy(); }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Checks exactly-once-or-gap as items arrive (the same rules as the Rust tests' Tracker). */
export class Tracker {
  constructor() {
    this.last = new Map();
    this.seqs = new Map(); // stream (`A`, or a tier `A@100ms`) -> [[seq, ts_ns]] since its last reset
    this.frames = new Map(); // tier stream -> [[from_seq, seq, trades]]
    this.pendingReset = new Map();
    this.gaps = [];
    this.resets = [];
    this.connects = 0;
    this.disconnects = [];
    this.errors = [];
    this.items = 0;
  }

  feed(item) {
    this.items++;
    switch (item.type) {
      case 'tick':
      case 'snapshot': {
        const s = stream(item);
        // A tier frame stands for from_seq..=seq: that range continues the stream.
        const first = item.tier ? item.from_seq : item.seq;
        const reset = this.pendingReset.get(s);
        if (reset) {
          assert.equal(reset.seq, item.seq, 'a reset names the seq that follows it');
          this.pendingReset.delete(s);
          this.seqs.set(s, []);
        } else if (this.last.has(s)) {
          assert.ok(first === this.last.get(s) + 1 && item.seq >= first, `${s}: seqs ${first}..=${item.seq} after ${this.last.get(s)}: a silent hole or a duplicate`);
        }
        if (item.tier) {
          if (!this.frames.has(s)) this.frames.set(s, []);
          this.frames.get(s).push([item.from_seq, item.seq, item.trades]);
        }
        this.last.set(s, item.seq);
        if (!this.seqs.has(s)) this.seqs.set(s, []);
        this.seqs.get(s).push([item.seq, item.ts_ns]);
        break;
      }
      case 'gap':
        assert.ok(item.from <= item.to, `a gap is not empty: ${JSON.stringify(item)}`);
        if (this.last.has(stream(item))) assert.equal(item.from, this.last.get(stream(item)) + 1, `a gap starts after the last seq: ${JSON.stringify(item)}`);
        this.last.set(stream(item), item.to);
        this.gaps.push(item);
        break;
      case 'reset':
        this.pendingReset.set(stream(item), item);
        this.resets.push(item);
        break;
      case 'connected': this.connects++; break;
      case 'disconnected': this.disconnects.push(item.reason); break;
      case 'error': this.errors.push(item.code); break;
      default:
    }
  }
}

/** The stream an item is in: its symbol, or `SYMBOL@TIER` for a rate tier. */
function stream(item) {
  return item.tier ? `${item.symbol}@${item.tier}` : item.symbol;
}

/** Reads items into `tracker` until `done(tracker)`, calling `onItem` after each. */
export async function readUntil(client, tracker, what, done, onItem = () => {}) {
  const deadline = Date.now() + WAIT_MS;
  while (!done(tracker)) {
    const left = deadline - Date.now();
    let timer;
    const item = await Promise.race([
      client.next(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${tracker.items} items, last ${JSON.stringify([...tracker.last])}`)), Math.max(0, left)); }),
    ]).finally(() => clearTimeout(timer));
    if (item === undefined) throw new Error(`the stream ended while waiting for ${what}`);
    tracker.feed(item);
    onItem(tracker, item);
  }
}

export const fastBackoff = { initialMs: 20, maxMs: 200 };

/** Headless Chromium (Debian's `chromium`, or $CHROMIUM) with a throwaway profile;
 * `close()` closes it and removes the profile. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(path.join(tmpdir(), 'tickrelay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    // Without the background-networking flags Chromium's own connections are refused here
    // and slow it down; nothing but loopback is reached.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// --- scripted frames, for what a real relay cannot be made to send ----------------------------

/** Server messages in both wire forms: `json` text and `proto` (an encoded ServerMessage). */
export const msg = {
  welcome: (session) => ({
    json: `{"type":"welcome","session":${session},"epoch":7}`,
    proto: field(1, concat(varintField(1, session), varintField(9, 7))),
  }),
  /** A tick whose ts_ns and recv_ns are its seq (so a replayed one is the same tick). */
  tick: (symbol, seq) => ({
    json: `{"type":"tick","symbol":"${symbol}","seq":${seq},"kind":"trade","ts_ns":${seq},"recv_ns":${seq},"price":${100 + seq}}`,
    proto: field(2, concat(field(1, utf8(symbol)), varintField(2, 1), doubleField(3, 100 + seq), fixed64Field(10, seq), varintField(11, seq), fixed64Field(12, seq))),
  }),
  /** An event whose `data` is the text `data`, byte for byte, in both forms. */
  event: (channel, seq, data) => ({
    json: `{"type":"event","channel":"${channel}","seq":${seq},"ts_ns":${seq},"data":${data}}`,
    proto: field(9, concat(field(1, utf8(channel)), varintField(2, seq), fixed64Field(3, seq), field(4, utf8(data)))),
  }),
  raw: (json, proto) => ({ json, proto: Uint8Array.from(proto) }),
};

/** Frames messages as the relay does for one connection: json text and gzip as messages
 * separated by `\n` (one stream per connection, a sync flush per frame), protobuf as one
 * ServerMessage or, with batches, one ServerBatch. */
export class FrameEncoder {
  constructor(encoding, batch = false) {
    this.encoding = encoding;
    this.batch = batch;
    this.started = false;
  }

  frame(messages) {
    assert.ok(this.batch || messages.length === 1, 'several messages need batch on');
    const text = messages.map((m) => m.json).join('\n');
    if (this.encoding === 'json') return { text };
    if (this.encoding === 'protobuf') return { binary: this.batch ? concat(...messages.map((m) => field(1, m.proto))) : messages[0].proto };
    return { binary: this.gzip(Buffer.from(text)) };
  }

  /** The next piece of this connection's gzip stream: each piece is raw deflate ending in a
   * sync flush and referring to nothing before it, so the pieces join into one stream. */
  gzip(bytes) {
    const piece = zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const header = this.started ? [] : [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    this.started = true;
    return concat(Uint8Array.from(header), piece);
  }
}

/** A loopback WebSocket server (RFC 6455, server side, the few parts a test needs): its nth
 * connection is sent the nth script (frames `{text}`, `{binary}` or `{close, reason}`), then
 * held open; connections beyond the scripts are held silent. `requests` lists the request
 * URLs in order. */
export class ScriptServer {
  static async start(scripts) {
    const server = new ScriptServer(scripts);
    await new Promise((resolve) => server.http.listen(0, '127.0.0.1', resolve));
    server.addr = `127.0.0.1:${server.http.address().port}`;
    return server;
  }

  constructor(scripts) {
    this.requests = [];
    this.sockets = new Set();
    let next = 0;
    this.http = http.createServer((_, response) => response.writeHead(426).end());
    this.http.on('upgrade', (request, socket) => {
      this.requests.push(request.url);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      socket.on('data', () => {}); // the client's control messages: read, not answered
      const accept = crypto.createHash('sha1').update(`${request.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      for (const frame of scripts[next++] ?? []) {
        if (frame.text !== undefined) socket.write(wsFrame(1, Buffer.from(frame.text)));
        else if (frame.binary !== undefined) socket.write(wsFrame(2, Buffer.from(frame.binary)));
        else {
          const close = Buffer.alloc(2);
          close.writeUInt16BE(frame.close);
          socket.end(wsFrame(8, Buffer.concat([close, Buffer.from(frame.reason ?? '')])));
          break;
        }
      }
    });
  }

  get url() {
    return `ws://${this.addr}/ws`;
  }

  async close() {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.http.close(resolve));
  }
}

/** An unmasked server frame (RFC 6455 §5.2). */
function wsFrame(opcode, payload) {
  const length = payload.length;
  let head;
  if (length < 126) {
    head = Buffer.from([0x80 | opcode, length]);
  } else if (length < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(length, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  head[0] = 0x80 | opcode;
  return Buffer.concat([head, payload]);
}

// Protobuf wire format, the four field kinds the scripts use.
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? byte | 0x80 : byte);
  } while (v);
  return Uint8Array.from(out);
}
const varintField = (n, value) => concat(varint(n << 3), varint(value));
const field = (n, bytes) => concat(varint((n << 3) | 2), varint(bytes.length), bytes);
function fixed64Field(n, value) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return concat(varint((n << 3) | 1), b);
}
function doubleField(n, value) {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value);
  return concat(varint((n << 3) | 1), b);
}
const utf8 = (text) => new TextEncoder().encode(text);
const concat = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))));
