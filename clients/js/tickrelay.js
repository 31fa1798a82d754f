// tickrelay client for browsers and Node >= 20: one ES module, no build step, no dependencies.
//
// const client = await connect('ws://127.0.0.1:8080/ws', { symbols: ['BTC-USD'] });
// for await (const item of client) console.log(item); // tick, snapshot, gap, reset, ...
//
// Channels the relay computes from trades come typed: `channels: ['bars:1m:BTC-USD',
// 'ticker:BTC-USD']` gives {type:'bar_snapshot', channel, seq, bars} on subscribe, then
// {type:'bar', channel, seq, start_ns, open, high, low, close, volume, trades, closed} and
// {type:'ticker', channel, seq, last, open, high, low, volume, change, change_percent, ts_ns},
// seq-checked and resumed like any channel.
//
// Per symbol the application sees every seq exactly once and in order, or an explicit item
// saying what it will not see: {type:'gap', symbol, from, to, reason} or
// {type:'reset', symbol, last_seq, seq} (the relay's history started again).
//
// Rate tiers: `symbols: ['BTC-USD@1s']` (or a channel `news@5s`) follows the symbol at most once
// per interval; its ticks carry `tier`, `from_seq` (the frame stands for from_seq..=seq), and
// `trades`, `volume`, `high`, `low`. A tier has seqs of its own, checked and resumed apart from
// the raw stream of the same symbol: each frame's from_seq is the last one's seq + 1, and a
// gap or reset of a tier names it in `tier`. Behind the
// iterator the client reconnects with jittered exponential backoff, resumes every symbol
// from one seq before the last it delivered (the relay sends that tick again, so a restarted
// relay whose new history looks continuous is caught: another tick under the same seq is a
// reset), asks for heartbeats and reconnects when the connection goes silent, and conflates
// (or fails, by option) when the application reads too slowly. See README.md beside this file.

import { Books, decodeBook, isBook } from './book.js';

/**
 * The relay's wire facts this client acts on, each written once (docs/PROTOCOL.md), the same
 * rows as the Rust client's `wire.rs`: error codes with the close code that follows them when
 * they end a session and the HTTP status that refuses an upgrade with them (null: never seen
 * there), close codes that carry no error code, and what the stream does on each: 'reconnect_now'
 * (the relay is stopping or restarting: at once, after a small jitter only, and resume),
 * 'reconnect' (after a backoff, and resume), 'fatal' (reconnecting would send the same thing
 * again), 'unauthorized' (the same token cannot do better), 'reconnect_without_resume' (the
 * resume list is longer than the relay takes). The rest of the module asks these tables.
 */
export const WIRE = Object.freeze({
  errors: Object.freeze([
    { code: 'protocol_error', close: 1002, http: null, then: 'fatal' },
    { code: 'message_too_big', close: 1009, http: null, then: 'fatal' },
    { code: 'inflated_too_big', close: 1009, http: null, then: 'fatal' },
    { code: 'bad_deflate', close: 1007, http: null, then: 'fatal' },
    { code: 'invalid_utf8', close: 1007, http: null, then: 'fatal' },
    { code: 'auth_required', close: 4001, http: 401, then: 'unauthorized' },
    { code: 'invalid_token', close: 4001, http: 401, then: 'unauthorized' },
    { code: 'token_expired', close: 4002, http: 401, then: 'unauthorized' },
    { code: 'user_connection_limit', close: 4001, http: 429, then: 'unauthorized' },
    // In a session `forbidden` refuses one subscription and the session goes on.
    { code: 'forbidden', close: null, http: 403, then: 'unauthorized' },
    { code: 'too_many_symbols', close: null, http: 400, then: 'reconnect_without_resume' },
    { code: 'draining', close: null, http: 503, then: 'reconnect' },
    { code: 'too_many_connections', close: null, http: 503, then: 'reconnect' },
    { code: 'slow_consumer', close: 4008, http: null, then: 'reconnect' },
    { code: 'idle_timeout', close: 4009, http: null, then: 'reconnect' },
  ].map(Object.freeze)),
  closes: Object.freeze([
    { close: 1000, name: 'normal', then: 'reconnect' },
    { close: 1001, name: 'going_away', then: 'reconnect_now' },
    { close: 1003, name: 'unsupported_data', then: 'fatal' },
    { close: 1012, name: 'service_restart', then: 'reconnect_now' },
    { close: 4003, name: 'closed_by_operator', then: 'reconnect' },
  ].map(Object.freeze)),
  /** Query parameters of the connect URL. */
  params: Object.freeze({
    symbols: 'symbols', channels: 'channels', encoding: 'encoding', slow: 'slow', resume: 'resume',
    resumeChannels: 'resume_channels', epoch: 'epoch',
    // `on`: several messages per frame (json, gzip: separated by `\n`; protobuf: every binary
    // frame is one ServerBatch).
    batch: 'batch',
  }),
});

/** What the stream does when the relay closes with `code` (an unknown code: reconnect). */
function onClose(code) {
  return (WIRE.closes.find((r) => r.close === code) ?? WIRE.errors.find((r) => r.close === code))?.then ?? 'reconnect';
}

/** Whether a session error ends the session for its token (a 4001 or 4002 close follows). */
function endsSessionForToken(code) {
  return WIRE.errors.some((r) => r.code === code && r.then === 'unauthorized' && r.close !== null);
}

/** The error code a close explains itself with when no error came before it (4001:
 * `auth_required`, the first row with that close code). */
function closeCodeName(close) {
  return WIRE.errors.find((r) => r.close === close)?.code ?? 'auth_required';
}

/** Whether a client asks the relay for several messages per frame unless `batch` says otherwise. */
// On: the relay frames what is pending at each write as one batch (docs/PROTOCOL.md, "Batches").
export const BATCH_BY_DEFAULT = true;

/** The longest wait before reconnecting to a relay that closed with going away (1001) or
 * service restart (1012): short against any reconnect (a handshake and a resume). */
const GOING_AWAY_JITTER_MS = 50;

const DEFAULTS = {
  symbols: [],
  channels: [],
  encoding: 'json', // 'json' | 'gzip' | 'protobuf'
  batch: BATCH_BY_DEFAULT, // several messages per frame (`?batch=on`)
  token: undefined, // a JWT, sent in-band as the first message ({"op":"auth"}): see open()
  livenessMs: 10000, // silence before the connection is given up
  heartbeatMs: undefined, // default: livenessMs / 3; 0: no heartbeats (liveness pings only)
  backoff: { initialMs: 100, maxMs: 5000 },
  buffer: 10000, // items kept for a slow reader before slowConsumer applies
  slowConsumer: 'conflate', // 'conflate' | 'error' (a browser socket cannot be paused)
  resumeFrom: {}, // { SYMBOL: last seq the application has }
  resumeEpoch: undefined, // the epoch of resumeFrom's seqs (the relay trusts none without it)
  maxResume: 1024, // the relay's --max-symbols-per-client: a longer resume list is refused
  WebSocket: undefined, // a WebSocket constructor; default globalThis.WebSocket
};

/**
 * An error that ends the stream: `code` is 'consumer_too_slow', 'closed', 'connect_failed', or
 * the relay's code for a refused token ('invalid_token', 'token_expired', 'auth_required',
 * 'user_connection_limit'): reconnecting with that token could only be refused again.
 */
export class TickrelayError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'TickrelayError';
    this.code = code;
  }
}

/** Connects and resolves once the relay has welcomed the first connection. */
export async function connect(url, options = {}) {
  const client = new TickrelayClient(url, options);
  await client.ready;
  return client;
}

/** The client: an async iterator of items that survives disconnects and relay restarts. */
export class TickrelayClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    this.WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new TickrelayError('no_websocket', 'no WebSocket: pass options.WebSocket (Node 20: --experimental-websocket)');
    this.symbols = new Set(this.options.symbols);
    this.seqCheck = new SeqCheck(this.options.resumeFrom, this.options.resumeEpoch);
    this.books = new Books((message) => this.send(message)); // book: channels (book.js)
    this.queue = new Queue(this.options.buffer, this.options.slowConsumer);
    this.attempt = 0;
    this.closed = false;
    this.pingId = 0;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // rejects for whoever awaits it; not an unhandled rejection

    this.open();
  }

  /** The next item (a promise); rejects with a TickrelayError when the stream fails. */
  next() {
    return this.queue.next();
  }

  [Symbol.asyncIterator]() {
    return {
      next: async () => {
        const item = await this.queue.next();
        return item === undefined ? { value: undefined, done: true } : { value: item, done: false };
      },
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }

  /** Subscribes to more symbols (`SYMBOL@TIER` for a rate tier: one on another tier of the
   * same symbol replaces it, as the relay does); one seen before resumes from its last seq. */
  subscribe(symbols) {
    const all = this.symbols.has('*');
    const plain = [];
    const from = {};
    for (const symbol of symbols) {
      if (this.symbols.has(symbol)) continue;
      const [name, tier] = splitTier(symbol);
      if (tier !== undefined) for (const s of this.symbols) if (s.startsWith(`${name}@`)) this.symbols.delete(s);
      this.symbols.add(symbol);
      const seq = this.seqCheck.resumePosition(symbol);
      // `resume` of a symbol covered by `*` is refused (already_subscribed).
      if (seq !== undefined && !all && symbol !== '*') from[symbol] = seq;
      else plain.push(symbol);
    }
    if (plain.length) this.send({ op: 'subscribe', symbols: plain });
    if (Object.keys(from).length) this.send(this.withEpoch({ op: 'resume', from }));
  }

  /** A resume op names the epoch its seqs belong to: the relay trusts no position without it. */
  withEpoch(op) {
    if (this.seqCheck.epoch !== undefined) op.epoch = Number(this.seqCheck.epoch);
    return op;
  }

  /** Unsubscribes; ticks already on their way are still delivered. */
  unsubscribe(symbols) {
    const gone = symbols.filter((s) => this.symbols.delete(s));
    if (gone.length) this.send({ op: 'unsubscribe', symbols: gone });
  }

  /** The last seq the application has read, per symbol (a tier as `SYMBOL@TIER`), for
   * options.resumeFrom. */
  positions() {
    return Object.fromEntries(this.queue.popped);
  }

  /** How far behind the application is: items (and a pending error) next() returns at once. */
  backlog() {
    return this.queue.backlog();
  }

  /** Closes the connection for good; the iterator ends. */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stopTimers();
    if (this.ws) this.ws.close(1000);
    this.queue.end();
  }

  // --- connection ---------------------------------------------------------------------------

  buildUrl() {
    const all = this.symbols.has('*');
    let resume = this.seqCheck.resumePositions().filter(([s]) => all || this.symbols.has(s));
    // Under `*` the list can outgrow what the relay accepts (a browser cannot see the 400):
    // connect without it; the snapshots stand in for the replays, their jumps become gaps.
    if (resume.length > this.options.maxResume) resume = [];
    const params = [];
    // With `*` and positions, `*` is subscribed after the welcome: its connect-time snapshots
    // would come before the replays and break their order.
    const symbols = [...this.symbols].filter((s) => s !== '*' || resume.length === 0);
    const p = WIRE.params;
    if (symbols.length) params.push(`${p.symbols}=${enc(symbols.join(','))}`);
    // With a token, channels are subscribed after the welcome (see accept): a relay that
    // admits anonymous clients refuses a connect-time `user:` channel before the in-band
    // token has been read.
    const channelsInUrl = !this.options.token;
    if (channelsInUrl && this.options.channels.length) params.push(`${p.channels}=${enc(this.options.channels.join(','))}`);
    params.push(`${p.encoding}=${this.options.encoding}`);
    if (this.options.batch) params.push(`${p.batch}=on`);
    if (this.options.slowConsumer === 'conflate') params.push(`${p.slow}=conflate`);
    if (resume.length) params.push(`${p.resume}=${enc(resume.map(([s, q]) => `${s}:${q}`).join(','))}`);
    // Channels resume like symbols (`CHANNEL:SEQ`: the seq follows the last `:`).
    const channels = this.seqCheck.resumePositions('channel').filter(([c]) => this.options.channels.includes(c));
    if (channelsInUrl && channels.length) params.push(`${p.resumeChannels}=${enc(channels.map(([c, q]) => `${c}:${q}`).join(','))}`);
    if (this.seqCheck.epoch !== undefined) params.push(`${p.epoch}=${enc(this.seqCheck.epoch)}`);
    return { url: `${this.url}${this.url.includes('?') ? '&' : '?'}${params.join('&')}`, resuming: new Set(resume.map(([s]) => s)) };
  }

  open() {
    if (this.closed) return;
    const { url, resuming } = this.buildUrl();
    const ws = new this.WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    const conn = { ws, resuming, welcomed: false, authError: undefined };
    let ended = false;
    // Messages are handled in the order they arrive; a broken gzip stream ends the connection
    // (nothing after it can be inflated), one bad message never does.
    conn.decoder = decoder(this.options.encoding, this.options.batch, (m) => { if (!ended) this.accept(conn, m); }, (e) => {
      ws.close(4000, 'undecodable frame');
      end(1006, `undecodable frame: ${e.message}`);
    });
    const end = (code, reason) => {
      if (ended) return;
      ended = true;
      conn.decoder.stop();
      this.stopTimers();
      if (this.ws === ws) this.ws = undefined;
      // A refused token (the relay answered an auth error, then closed with 4001 or 4002):
      // the same token can only be refused again, so the stream ends with the relay's code.
      const then = onClose(code);
      if (conn.authError || then === 'unauthorized') {
        const { code: why, message } = conn.authError ?? { code: closeCodeName(code), message: reason };
        const error = new TickrelayError(why, `the relay refused the token: ${why}: ${message}`);
        this.closed = true;
        if (this.rejectReady) {
          const reject = this.rejectReady;
          this.rejectReady = undefined;
          this.queue.end();
          reject(error);
        } else {
          this.queue.fail(error);
        }
        return;
      }
      if (!conn.welcomed && this.attempt === 0 && this.rejectReady) {
        // The first connection failed: connect() rejects (a browser cannot see why).
        const reject = this.rejectReady;
        this.rejectReady = undefined;
        this.closed = true;
        this.queue.end();
        reject(new TickrelayError('connect_failed', `could not connect to ${this.url} (${code} ${reason})`));
        return;
      }
      if (conn.welcomed) this.queue.push({ type: 'disconnected', code, reason });
      if (then === 'fatal') {
        this.queue.fail(new TickrelayError('closed', `the relay closed the connection with ${code}: ${reason}`));
        this.closed = true;
        return;
      }
      this.reconnect(then === 'reconnect_now');
    };
    ws.onmessage = (event) => {
      if (ended) return;
      this.heard();
      const data = event.data;
      if (typeof data === 'string') {
        for (const text of data.split('\n')) if (text) this.accept(conn, parseMessage(text));
      } else {
        conn.decoder.frame(new Uint8Array(data));
      }
    };
    // After the frames already received are handled: an `error` decoded from a binary frame
    // names why a 4001 close came.
    ws.onclose = (event) => { conn.decoder.settled().then(() => end(event.code, event.reason || 'connection closed')); };
    // The token goes in-band, as the first message, rather than in `?token=`: a browser cannot
    // see why an upgrade was refused, but it can read the relay's `error` before a 4001 close.
    // It also keeps the token out of URLs and access logs.
    ws.onopen = () => {
      if (this.options.token) ws.send(JSON.stringify({ op: 'auth', token: this.options.token }));
    };
    // On an open connection `close` follows with the code. A connection that never opened may
    // get only `error` (Node 20's WebSocket fires no `close` then).
    ws.onerror = () => { if (ws.readyState !== 1) end(1006, 'connection failed'); };
    this.liveness(ws, end);
  }

  /** Opens the next connection after a backoff, or `atOnce` (the relay is going away: the
   * URL leads to another relay, or this one back, now) after a small jitter only, so that the
   * clients of a stopping relay do not all arrive at the next one in the same instant. */
  reconnect(atOnce = false) {
    if (this.closed) return;
    if (atOnce) {
      this.retryTimer = setTimeout(() => this.open(), Math.random() * GOING_AWAY_JITTER_MS);
      return;
    }
    const { initialMs, maxMs } = this.options.backoff;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 20));
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.open(), base * (0.5 + Math.random() / 2));
  }

  liveness(ws, end) {
    const limit = this.options.livenessMs;
    this.heard = () => {
      this.lastHeard = Date.now();
      this.probed = false;
    };
    this.heard();
    this.livenessTimer = setInterval(() => {
      const silent = Date.now() - this.lastHeard;
      if (silent >= limit) {
        ws.close(4000, 'silent');
        end(1006, `no data and no heartbeat for ${limit} ms`);
      } else if (silent >= limit / 2 && !this.probed && ws.readyState === 1) {
        this.probed = true;
        ws.send(JSON.stringify({ op: 'ping', id: ++this.pingId }));
      }
    }, Math.max(20, Math.min(1000, limit / 10)));
  }

  /** Subscribes the channels after the welcome (the token's identity is known by then):
   * those seen before resume from their last seq, the others start with a snapshot. */
  subscribeChannels() {
    const from = Object.fromEntries(this.seqCheck.resumePositions('channel').filter(([c]) => this.options.channels.includes(c)));
    const fresh = this.options.channels.filter((c) => !(c in from));
    if (fresh.length) this.send({ op: 'subscribe', channels: fresh });
    if (Object.keys(from).length) this.send(this.withEpoch({ op: 'resume', from_channels: from }));
  }

  stopTimers() {
    clearInterval(this.livenessTimer);
  }

  send(message) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(message));
  }

  accept(conn, m) {
    if (m.type === 'welcome') {
      conn.welcomed = true;
      this.attempt = 0;
      const epoch = m.epoch === undefined ? undefined : String(m.epoch);
      this.seqCheck.welcome(epoch);
      this.books.reconnected();
      this.queue.push({ type: 'connected', session: m.session, ...(epoch === undefined ? {} : { epoch }), resumed: conn.resuming.size });
      if (this.symbols.has('*') && conn.resuming.size) this.send({ op: 'subscribe', symbols: ['*'] });
      if (this.options.token && this.options.channels.length) this.subscribeChannels();
      const heartbeat = this.options.heartbeatMs ?? Math.max(100, Math.floor(this.options.livenessMs / 3));
      if (heartbeat) this.send({ op: 'heartbeat', interval_ms: heartbeat });
      if (this.resolveReady) {
        this.resolveReady(this);
        this.resolveReady = undefined;
        this.rejectReady = undefined;
      }
      return;
    }
    const out = [];
    switch (m.type) {
      case 'tick':
      case 'snapshot':
        if (m.seq === undefined) break; // {"type":"snapshot","symbols":[...]}: an ack
        if (m.channel !== undefined) {
          // A channel's last event (on subscribe) is delivered as the event it is.
          this.seqCheck.item({ ...m, type: 'event' }, 'channel', m.channel, out);
          break;
        }
        conn.resuming.delete(streamName(m.symbol, m.tier));
        this.seqCheck.item(m, 'symbol', m.symbol, out);
        break;
      case 'event':
        this.seqCheck.item(m, 'channel', m.channel, out);
        break;
      case 'bar':
      case 'bar_snapshot':
      case 'ticker':
        this.seqCheck.item(m, 'channel', m.channel, out);
        break;
      case 'ticker_snapshot': // the current statistics, delivered as the ticker they are
        this.seqCheck.item({ ...m, type: 'ticker' }, 'channel', m.channel, out);
        break;
      case 'undecodable': {
        // Counted at its seq like the tick or event it was, so the stream goes on with the
        // next one: no gap for it, and no reconnect that would bring it back.
        const field = m.symbol !== undefined ? 'symbol' : m.channel !== undefined ? 'channel' : undefined;
        if (field && m.seq !== undefined) {
          if (field === 'symbol') conn.resuming.delete(streamName(m.symbol, m.tier));
          this.seqCheck.item(m, field, m[field], out);
        } else {
          out.push(m);
        }
        break;
      }
      case 'book':
        this.books.accept(m, out);
        break;
      case 'gap': {
        if (isBook(m.channel)) {
          this.books.gap(m.channel, m.from, m.to, out);
          break;
        }
        const field = m.symbol !== undefined ? 'symbol' : 'channel';
        const reason = field === 'symbol' && conn.resuming.delete(streamName(m.symbol, m.tier)) ? 'not_replayable' : 'relay_conflated';
        // A gap naming a tier is in that tier's seqs, not the raw stream's.
        this.seqCheck.gap(field, m[field], m.from, m.to, reason, out, m.tier);
        break;
      }
      case 'error':
        // `forbidden` refuses one subscription and the session goes on; these end it (an
        // anonymous-capable relay answers a refused in-band token without closing).
        if (endsSessionForToken(m.code)) {
          conn.authError = { code: m.code, message: m.message };
          conn.ws.close(1000);
        }
        out.push({ type: 'error', code: m.code, message: m.message });
        break;
      default: // acks, pongs, heartbeats: signs of life
    }
    for (const item of out) this.queue.push(item);
  }
}

// --- sequencing: exactly once, or say why not -------------------------------------------------

/** Checks every stream's seqs so that delivery is exactly-once-or-gap; the same rules as the
 * Rust client's `seq_check.rs`. A stream is a key's raw seqs or one of its rate tiers
 * (`BTC-USD@1s`), which has seqs of its own. An item stands for first..=seq (`first`: a tier
 * frame's from_seq, the seq itself otherwise): first === last + 1 continues, a higher first is
 * a `skipped` gap, and a tier frame that starts at or before last + 1 and ends after it (a
 * client moved to another relay whose tier fired a moment earlier) is delivered without one. */
export class SeqCheck {
  constructor(resumeFrom = {}, epoch = undefined) {
    this.positions = new Map(); // "symbol\0A" or "symbol\0A@1s" -> { seq, fingerprint, stale }
    for (const [symbol, seq] of Object.entries(resumeFrom)) this.positions.set(`symbol\0${symbol}`, { seq, fingerprint: undefined, stale: false });
    this.epoch = epoch === undefined ? undefined : String(epoch);
  }

  welcome(epoch) {
    if (epoch === undefined) return;
    if (this.epoch !== undefined && this.epoch !== epoch) for (const p of this.positions.values()) p.stale = true;
    this.epoch = epoch;
  }

  item(m, field, name, out) {
    const tier = m.tier || undefined;
    const key = `${field}\0${streamName(name, tier)}`;
    const seq = m.seq;
    const first = tier !== undefined && m.from_seq !== undefined ? Math.min(m.from_seq, seq) : seq;
    const named = { [field]: name, ...(tier === undefined ? {} : { tier }) };
    // What tells two items of one seq apart; none for an undecodable message.
    const fingerprint = m.type === 'undecodable' ? undefined : fingerprintOf(m);
    const p = this.positions.get(key);
    const fresh = { seq, fingerprint, stale: false };
    if (p) {
      const last = p.seq;
      const differs = p.fingerprint !== undefined && fingerprint !== undefined && p.fingerprint !== fingerprint;
      if (p.stale || seq < last || (seq === last && differs)) {
        out.push({ type: 'reset', ...named, last_seq: last, seq, ...(this.epoch === undefined ? {} : { epoch: this.epoch }) });
      } else if (seq === last) {
        return; // the same tick again: the resume overlap, or a snapshot of it
      } else if (first > last + 1) {
        out.push({ type: 'gap', ...named, from: last + 1, to: first - 1, reason: 'skipped' });
      }
    }
    this.positions.set(key, fresh);
    out.push(m);
  }

  gap(field, name, from, to, reason, out, tier = undefined) {
    tier ||= undefined;
    const key = `${field}\0${streamName(name, tier)}`;
    const named = { [field]: name, ...(tier === undefined ? {} : { tier }) };
    const p = this.positions.get(key);
    if (p && p.stale) {
      out.push({ type: 'reset', ...named, last_seq: p.seq, seq: from, ...(this.epoch === undefined ? {} : { epoch: this.epoch }) });
    } else if (p) {
      if (to <= p.seq) return; // all of it was delivered already
      from = p.seq + 1;
    }
    this.positions.set(key, { seq: to, fingerprint: undefined, stale: false });
    out.push({ type: 'gap', ...named, from, to, reason });
  }

  /** [name, seq] pairs of `field` ('symbol' or 'channel') to resume from, a tier named
   * `NAME@TIER`: a raw stream one before its last seq, so the relay re-sends it; a tier at its
   * last seq (the frame sent again would stand for more than that tick, and a relay with tiers
   * sends an epoch, which tells histories apart). */
  resumePositions(field = 'symbol') {
    const out = [];
    for (const [key, p] of this.positions) {
      const at = key.indexOf('\0');
      if (key.slice(0, at) === field) out.push([key.slice(at + 1), resumeAt(key.slice(at + 1), p.seq)]);
    }
    return out.sort();
  }

  resumePosition(symbol) {
    const p = this.positions.get(`symbol\0${symbol}`);
    return p === undefined ? undefined : resumeAt(symbol, p.seq);
  }
}

/** The seq to resume stream `name` after, its last being `last` (see resumePositions). */
function resumeAt(name, last) {
  return splitTier(name)[1] === undefined ? Math.max(0, last - 1) : last;
}

/** The name a stream is subscribed and resumed under: `NAME` or `NAME@TIER`. */
function streamName(name, tier) {
  return tier ? `${name}@${tier}` : name;
}

/** `NAME@TIER` -> [NAME, TIER]; `NAME` -> [NAME, undefined] (a symbol or channel has no `@`). */
function splitTier(stream) {
  const at = stream.indexOf('@');
  return at < 0 ? [stream, undefined] : [stream.slice(0, at), stream.slice(at + 1)];
}

// --- the buffer between the socket and the application ---------------------------------------

class Queue {
  constructor(capacity, policy) {
    this.items = [];
    this.capacity = Math.max(1, capacity);
    this.policy = policy;
    this.slots = new Map(); // stream key -> { skipped: [from, to, reason] | undefined, latest }
    this.waiting = [];
    this.failed = undefined;
    this.ended = false;
    this.popped = new Map();
  }

  push(item) {
    if (this.failed || this.ended) return;
    const key = keyOf(item);
    if (key !== undefined && this.slots.has(key)) {
      this.conflateInto(key, item);
    } else if (this.items.length < this.capacity || !SEQUENCED.includes(item.type)) {
      this.items.push(item); // status items, gaps and resets are rare: never dropped
    } else if (this.policy === 'error') {
      this.failed = new TickrelayError('consumer_too_slow', `the application fell ${this.capacity} items behind the stream`);
    } else {
      this.slots.set(key, { skipped: undefined, latest: undefined });
      this.conflateInto(key, item);
    }
    this.wake();
  }

  conflateInto(key, item) {
    const slot = this.slots.get(key);
    // The first seq the held item stands for (a tier frame's from_seq): dropping it skips all.
    const latestSeq = slot.latest === undefined ? undefined : firstSeq(slot.latest);
    if (item.type === 'gap') {
      const from = slot.skipped?.[0] ?? latestSeq ?? item.from;
      slot.skipped = [from, item.to, slot.skipped?.[2] ?? item.reason];
      slot.latest = undefined;
    } else if (item.type === 'reset') {
      this.flush(key);
      this.items.push(item);
    } else {
      if (latestSeq !== undefined) slot.skipped = [slot.skipped?.[0] ?? latestSeq, firstSeq(item) - 1, slot.skipped?.[2] ?? 'client_conflated'];
      slot.latest = item;
    }
  }

  flush(key) {
    const slot = this.slots.get(key);
    this.slots.delete(key);
    const field = key.split('\0')[0];
    const [name, tier] = splitTier(key.slice(field.length + 1));
    const named = { [field]: name, ...(tier === undefined ? {} : { tier }) };
    if (slot.skipped) this.items.push({ type: 'gap', ...named, from: slot.skipped[0], to: slot.skipped[1], reason: slot.skipped[2] });
    if (slot.latest) this.items.push(slot.latest);
  }

  pop() {
    if (this.items.length <= this.capacity / 2) for (const key of [...this.slots.keys()]) this.flush(key);
    const item = this.items.shift();
    if (item !== undefined) {
      const key = keyOf(item);
      if (item.symbol !== undefined && key !== undefined) {
        const stream = streamName(item.symbol, item.tier);
        if (item.type === 'gap') this.popped.set(stream, item.to);
        else if (['tick', 'snapshot', 'undecodable'].includes(item.type)) this.popped.set(stream, item.seq);
      }
    }
    return item;
  }

  backlog() {
    let conflated = 0;
    for (const slot of this.slots.values()) conflated += (slot.skipped ? 1 : 0) + (slot.latest ? 1 : 0);
    return this.items.length + conflated + (this.failed ? 1 : 0);
  }

  next() {
    const item = this.pop();
    if (item !== undefined) return Promise.resolve(item);
    if (this.failed) {
      const error = this.failed;
      this.failed = undefined;
      this.ended = true;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  wake() {
    while (this.waiting.length && (this.items.length || this.slots.size || this.failed || this.ended)) {
      const { resolve, reject } = this.waiting.shift();
      this.next().then(resolve, reject);
    }
  }

  fail(error) {
    this.failed ??= error;
    this.wake();
  }

  end() {
    this.ended = true;
    this.wake();
  }
}

/** The stream an item belongs to (a raw stream and a tier of one symbol are two), or undefined. */
function keyOf(item) {
  if (item.type === 'undecodable' && item.seq === undefined) return undefined;
  if (item.symbol !== undefined && ['tick', 'snapshot', 'gap', 'reset', 'undecodable'].includes(item.type)) return `symbol\0${streamName(item.symbol, item.tier)}`;
  if (item.channel !== undefined && [...SEQUENCED, 'gap', 'reset', 'undecodable'].includes(item.type)) return `channel\0${streamName(item.channel, item.tier)}`;
  return undefined;
}

/** The first seq an item stands for: a tier frame's from_seq, the seq itself otherwise. */
function firstSeq(item) {
  return item.tier && item.from_seq !== undefined ? Math.min(item.from_seq, item.seq) : item.seq;
}

// --- decoding ---------------------------------------------------------------------------------

/**
 * A connection's binary frames, decoded in order and handed to `deliver` message by message;
 * `broken` is called once if a gzip stream cannot be inflated further. With `batch` a frame
 * holds several messages (protobuf: every binary frame is one ServerBatch; gzip: its text has
 * them separated by `\n`). A message that does not decode is delivered as
 * `{type:'undecodable', reason}` (with its key and seq when they can be read). `settled()`
 * resolves once every frame given so far has been delivered.
 */
function decoder(encoding, batch, deliver, broken) {
  if (encoding === 'gzip') return gunzipFeed(deliver, broken);
  let each = () => deliver({ type: 'undecodable', reason: 'a binary frame on a json connection' });
  if (encoding === 'protobuf') each = batch ? (frame) => decodeBatch(frame).forEach(deliver) : (frame) => deliver(decodeProtobuf(frame));
  return { frame: each, settled: () => Promise.resolve(), stop() {} };
}

/** A `ServerBatch` (`repeated ServerMessage messages = 1`): each message decoded alone, so a
 * bad one is one undecodable item among the others. */
function decodeBatch(frame) {
  let fields;
  try {
    fields = readFields(frame);
  } catch (e) {
    return [{ type: 'undecodable', reason: `invalid protobuf batch: ${e.message}` }];
  }
  return fields.filter(([n, v]) => n === 1 && v instanceof Uint8Array).map(([, v]) => decodeProtobuf(v));
}

/** One JSON message (a text frame, or the text of a gzip stream between messages). JSON.parse
 * takes any depth; text that still does not parse is undecodable. */
function parseMessage(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    return undecodable(text, `invalid JSON message: ${e.message}`);
  }
}

/** The relay writes `type`, then `symbol` or `channel`, then `seq` first (docs/PROTOCOL.md: the
 * field order is fixed), so a message that does not parse still names its key and seq. */
const NAMED = /^\s*\{"type":"(tick|snapshot|event)","(symbol|channel)":"([^"\\]*)","seq":(\d+)[,}]/;

/** A tier frame names its tier after its other fields: read apart, so that an undecodable tier
 * frame counts in its tier's seqs, not the raw stream's. */
const NAMED_TIER = /,"tier":"([^"\\]+)"/;

function undecodable(text, reason) {
  const named = NAMED.exec(text);
  if (!named) return { type: 'undecodable', reason };
  const tier = NAMED_TIER.exec(text)?.[1];
  return { type: 'undecodable', [named[2]]: named[3], seq: Number(named[4]), ...(tier === undefined ? {} : { tier }), reason };
}

function decodeProtobuf(frame) {
  try {
    return decodeServerMessage(frame);
  } catch (e) {
    return { type: 'undecodable', reason: `invalid protobuf message: ${e.message}` };
  }
}

/**
 * One gzip stream per connection, a sync flush per frame (docs/ENCODINGS.md). The inflated
 * text is read as it comes, whatever the chunks the decompressor makes of it, and cut into
 * messages by `splitMessages`: a frame's output may arrive in several chunks, and never needs
 * the next frame to complete.
 */
function gunzipFeed(deliver, broken) {
  const gunzip = new DecompressionStream('gzip');
  const writer = gunzip.writable.getWriter();
  const reader = gunzip.readable.getReader();
  const utf8 = new TextDecoder();
  const split = splitMessages();
  let written = Promise.resolve();
  let stopped = false;
  (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const text of split(utf8.decode(value, { stream: true }))) deliver(parseMessage(text));
    }
  })().catch((e) => { if (!stopped) broken(e); });
  return {
    frame(bytes) {
      // Not awaited here: a write completes only once its output is being read (above).
      written = writer.write(bytes);
      written.catch(() => {});
    },
    // A write resolves once its frame is inflated; what it made is read by the loop above in
    // promise jobs, all run before the next task.
    settled: () => written.catch(() => {}).then(() => new Promise((resolve) => setTimeout(resolve, 0))),
    stop() {
      stopped = true;
      reader.cancel().catch(() => {});
    },
  };
}

/** Longest text one message may take before it is cut as undecodable (a stream that lost its
 * braces would otherwise hold everything after it). */
const MAX_MESSAGE_CHARS = 1 << 20;

/**
 * Cuts a stream of text into JSON messages: at a newline (between the messages of a batch) or
 * where an object's braces close (one message per frame has no newline after it), strings
 * and escapes respected; any depth. Returns a function: chunk -> messages completed by it.
 */
function splitMessages() {
  let pending = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  return (chunk) => {
    const out = [];
    let start = 0;
    const cut = (end) => {
      const text = (pending + chunk.slice(start, end)).trim();
      if (text) out.push(text);
      pending = '';
      start = end;
      depth = 0;
      inString = false;
      escaped = false;
    };
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c === 10) { // '\n' never appears inside a JSON message: always a boundary
        cut(i + 1);
      } else if (inString) {
        if (escaped) escaped = false;
        else if (c === 92) escaped = true; // '\\'
        else if (c === 34) inString = false; // '"'
      } else if (c === 34) {
        inString = true;
      } else if (c === 123 || c === 91) { // '{' '['
        depth++;
      } else if ((c === 125 || c === 93) && --depth <= 0) { // '}' ']'
        cut(i + 1);
      }
    }
    pending += chunk.slice(start);
    if (pending.length > MAX_MESSAGE_CHARS) cut(chunk.length);
    return out;
  };
}

const utf8Decoder = new TextDecoder();

/** Decodes a `tickrelay.v1.ServerMessage` into the same object a JSON frame gives. */
export function decodeServerMessage(bytes) {
  const fields = readFields(bytes);
  for (const [number, value] of fields) {
    switch (number) {
      case 1: {
        const w = { type: 'welcome', symbols: [] };
        for (const [n, v] of readFields(value)) {
          if (n === 1) w.session = Number(v);
          else if (n === 2) w.shard = Number(v);
          else if (n === 3) w.encoding = utf8Decoder.decode(v);
          else if (n === 4) w.symbols.push(utf8Decoder.decode(v));
          else if (n === 5) w.server = utf8Decoder.decode(v);
          else if (n === 9 && Number(v) !== 0) w.epoch = Number(v); // below 2^53: exact
        }
        return w;
      }
      case 2:
      case 3:
        return decodeTick(value, number === 2 ? 'tick' : 'snapshot');
      case 4: {
        // An ack: its op ("subscribed", "snapshot", ...) is not a message type here.
        const a = { type: 'ack', op: '', symbols: [] };
        for (const [n, v] of readFields(value)) {
          if (n === 1) a.op = utf8Decoder.decode(v);
          else if (n === 2) a.symbols.push(utf8Decoder.decode(v));
        }
        return a;
      }
      case 5: {
        const e = { type: 'error', code: '', message: '' };
        for (const [n, v] of readFields(value)) {
          if (n === 1) e.code = utf8Decoder.decode(v);
          else if (n === 2) e.message = utf8Decoder.decode(v);
        }
        return e;
      }
      case 6:
        return { type: 'pong' };
      case 7: {
        const g = { type: 'gap', from: 0, to: 0 };
        for (const [n, v] of readFields(value)) {
          if (n === 1 && v.length) g.symbol = utf8Decoder.decode(v);
          else if (n === 2) g.from = Number(v);
          else if (n === 3) g.to = Number(v);
          else if (n === 4 && v.length) g.channel = utf8Decoder.decode(v);
          else if (n === 5 && v.length) g.tier = utf8Decoder.decode(v);
        }
        return g;
      }
      case 8:
        return { type: 'heartbeat' };
      case 21:
      case 22:
      case 23:
      case 24:
        return decodeDerived(number, value);
      case 25:
        return decodeBook(value, readFields);
      case 9: // an event; 10: a channel's last event, delivered as the event it is
      case 10: {
        const e = { type: 'event', channel: '', seq: 0, ts_ns: 0, data: null };
        let data = 'null';
        for (const [n, v] of readFields(value)) {
          if (n === 1) e.channel = utf8Decoder.decode(v);
          else if (n === 2) e.seq = Number(v);
          else if (n === 3) e.ts_ns = Number(v);
          else if (n === 4) data = utf8Decoder.decode(v);
          else if (n === 5 && v.length) e.tier = utf8Decoder.decode(v);
          else if (n === 6) e.from_seq = Number(v);
        }
        if (e.tier) e.from_seq ??= 0;
        try {
          e.data = JSON.parse(data);
        } catch (err) {
          return { type: 'undecodable', channel: e.channel, seq: e.seq, reason: `event data is not one JSON value: ${err.message}` };
        }
        return e;
      }
      default:
    }
  }
  return { type: 'unknown' };
}

const TICK_DOUBLES = { 3: 'price', 4: 'size', 5: 'bid', 6: 'ask', 7: 'bid_size', 8: 'ask_size', 16: 'volume', 17: 'high', 18: 'low' };

function decodeTick(bytes, type) {
  const t = { type, symbol: '', seq: 0, kind: 'trade', ts_ns: 0, recv_ns: 0 };
  for (const [n, v] of readFields(bytes, TICK_DOUBLES)) {
    if (n === 1) t.symbol = utf8Decoder.decode(v);
    else if (n === 2) t.kind = Number(v) === 2 ? 'quote' : 'trade';
    else if (TICK_DOUBLES[n]) t[TICK_DOUBLES[n]] = v;
    else if (n === 9) t.venue = utf8Decoder.decode(v);
    else if (n === 10) t.ts_ns = Number(v); // exact as a BigInt on the wire; a Number here, like JSON
    else if (n === 11) t.seq = Number(v);
    else if (n === 12) t.recv_ns = Number(v);
    else if (n === 13) t.tier = utf8Decoder.decode(v);
    else if (n === 14) t.from_seq = Number(v);
    else if (n === 15) t.trades = Number(v);
  }
  // A tier frame (docs/PROTOCOL.md, "Rate tiers") as its JSON reads: proto3 leaves out zeros.
  if (t.tier) {
    t.from_seq ??= 0;
    t.trades ??= 0;
    t.volume ??= 0;
  }
  return t;
}

/** Protobuf wire format: [field number, value] pairs; varints and fixed64 as BigInt, doubles as
 * numbers (`doubles`: the message's double fields, by number), length-delimited fields as
 * Uint8Array. */
function readFields(bytes, doubles = {}) {
  const out = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const varint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (at >= bytes.length) throw new Error('truncated varint');
      const byte = bytes[at++];
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
      shift += 7n;
    }
  };
  while (at < bytes.length) {
    const tag = Number(varint());
    const number = tag >>> 3;
    switch (tag & 7) {
      case 0:
        out.push([number, varint()]);
        break;
      case 1:
        // The message's doubles; fixed64 otherwise (ts_ns, recv_ns, Event.ts_ns, ...).
        out.push([number, number in doubles ? view.getFloat64(at, true) : view.getBigUint64(at, true)]);
        at += 8;
        break;
      case 2: {
        const length = Number(varint());
        out.push([number, bytes.subarray(at, at + length)]);
        at += length;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
  }
  return out;
}

/** A query value: `,` `:` `/` and `@` (`SYMBOL@TIER`) kept as they are, which a query may hold
 * (RFC 3986 §3.4) and the relay reads either way. */
function enc(value) {
  return encodeURIComponent(value).replace(/%2C/g, ',').replace(/%3A/g, ':').replace(/%2F/g, '/').replace(/%40/g, '@');
}

// --- bars and tickers (docs/PROTOCOL.md, "Bars and tickers") -------------------------------

/** The item types that carry a seq of their symbol or channel. */
const SEQUENCED = ['tick', 'snapshot', 'event', 'bar', 'bar_snapshot', 'ticker'];

/** What tells two items of one seq apart (a relay restarted: a reset, not a duplicate). */
function fingerprintOf(m) {
  if (m.type === 'bar') return `${m.start_ns}:${m.trades}`;
  if (m.type === 'bar_snapshot') {
    const newest = m.bars[m.bars.length - 1];
    return newest === undefined ? '' : `${newest.start_ns}:${newest.trades}`;
  }
  return `${m.ts_ns}:${m.recv_ns}`;
}

const BAR_FIELDS = { 3: 'start_ns', 4: 'open', 5: 'high', 6: 'low', 7: 'close', 8: 'volume', 9: 'trades' };
const BAR_DOUBLES = { 4: 1, 5: 1, 6: 1, 7: 1, 8: 1 };
const TICKER_FIELDS = { 3: 'last', 4: 'open', 5: 'high', 6: 'low', 7: 'volume', 8: 'change', 9: 'change_percent', 10: 'ts_ns' };
const TICKER_DOUBLES = { 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1 };

/**
 * ServerMessage fields 21-24 as the objects their JSON gives: `bar` (21), `bar_snapshot`
 * (22, its `bars` oldest first), `ticker` (23) and `ticker_snapshot` (24). proto3 leaves out
 * zeros and `false`: every field starts at its default.
 */
function decodeDerived(number, bytes) {
  const bar = (fields) => {
    const b = { start_ns: 0, open: 0, high: 0, low: 0, close: 0, volume: 0, trades: 0, closed: false };
    let channel = '';
    let seq = 0;
    for (const [n, v] of fields) {
      if (n === 1) channel = utf8Decoder.decode(v);
      else if (n === 2) seq = Number(v);
      else if (n === 10) b.closed = v !== 0n;
      else if (BAR_FIELDS[n]) b[BAR_FIELDS[n]] = Number(v);
    }
    return { channel, seq, bar: b };
  };
  if (number === 21) {
    const { channel, seq, bar: b } = bar(readFields(bytes, BAR_DOUBLES));
    return { type: 'bar', channel, seq, ...b };
  }
  if (number === 22) {
    const s = { type: 'bar_snapshot', channel: '', seq: 0, bars: [] };
    for (const [n, v] of readFields(bytes)) {
      if (n === 1) s.channel = utf8Decoder.decode(v);
      else if (n === 2) s.seq = Number(v);
      else if (n === 3) s.bars.push(bar(readFields(v, BAR_DOUBLES)).bar);
    }
    return s;
  }
  const t = { type: number === 23 ? 'ticker' : 'ticker_snapshot', channel: '', seq: 0 };
  for (const [n, v] of readFields(bytes, TICKER_DOUBLES)) {
    if (n === 1) t.channel = utf8Decoder.decode(v);
    else if (n === 2) t.seq = Number(v);
    else if (TICKER_FIELDS[n]) t[TICKER_FIELDS[n]] = Number(v);
  }
  return t;
}
