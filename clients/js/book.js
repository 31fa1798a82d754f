// Order books for the tickrelay client (imported by tickrelay.js; served by the relay at
// /book.js beside /tickrelay.js).
//
// For each `book:SYMBOL` or `book:SYMBOL:DEPTH` channel the client keeps a local book from the
// relay's snapshot and deltas and verifies the relay's checksum after every message: CRC32
// (IEEE) of the top N bids (best first) then the top N asks, each `price:size` (the decimal
// strings exactly as sent), joined by `|`. It delivers {type:'book', channel, seq, bids, asks,
// checksum} (the top levels as [price, size] strings, best first). On a mismatch, a skipped
// seq or a relay `gap` it delivers {type:'book_resync', channel, reason} instead, asks the
// relay for a fresh snapshot ({"op":"snapshot"}) and ignores that channel's deltas until it
// comes. A reconnect starts every book again from its subscription's snapshot.

/** Every book channel's local book. */
export class Books {
  /** `send(message)` sends a control message to the relay. */
  constructor(send) {
    this.send = send;
    this.books = new Map();
  }

  /** A new connection: every book comes again with its subscription's snapshot. */
  reconnected() {
    this.books.clear();
  }

  /** Applies one {type:'book'} message, pushing the book (or a resync) onto `out`. */
  accept(m, out) {
    let book = this.books.get(m.channel);
    if (!book) {
      book = { bids: new Map(), asks: new Map(), seq: 0, waiting: false };
      this.books.set(m.channel, book);
    }
    if (m.snapshot) {
      book.bids.clear();
      book.asks.clear();
      book.waiting = false;
    } else if (book.waiting) {
      return;
    } else if ((m.from_seq ?? m.seq) !== book.seq + 1) {
      this.resync(m.channel, { kind: 'gap', from: book.seq + 1, to: (m.from_seq ?? m.seq) - 1 }, out);
      return;
    }
    for (const [side, levels] of [[book.bids, m.bids], [book.asks, m.asks]]) {
      for (const [price, size] of levels) {
        if (isZero(size)) side.delete(price);
        else side.set(price, size);
      }
    }
    book.seq = m.seq;
    const depth = depthOf(m.channel);
    const bids = best(book.bids, depth, true);
    const asks = best(book.asks, depth, false);
    const actual = checksum(bids, asks);
    if (actual !== m.checksum) {
      this.resync(m.channel, { kind: 'checksum', expected: m.checksum, actual }, out);
      return;
    }
    out.push({ type: 'book', channel: m.channel, seq: m.seq, bids, asks, checksum: actual });
  }

  /** The relay announced missing messages of a book channel. */
  gap(channel, from, to, out) {
    this.resync(channel, { kind: 'gap', from, to }, out);
  }

  resync(channel, reason, out) {
    this.books.set(channel, { bids: new Map(), asks: new Map(), seq: 0, waiting: true });
    this.send({ op: 'snapshot', channels: [channel] });
    out.push({ type: 'book_resync', channel, reason });
  }
}

/** Whether `channel` is a book's. */
export function isBook(channel) {
  return typeof channel === 'string' && channel.startsWith('book:');
}

/** The top `depth` levels of a side as [price, size], best first (by exact decimal order). */
function best(side, depth, descending) {
  const prices = [...side.keys()].sort(compareDecimal);
  if (descending) prices.reverse();
  return prices.slice(0, depth).map((p) => [p, side.get(p)]);
}

/** CRC32 (IEEE) of the levels as `price:size` joined by `|`, bids first. */
export function checksum(bids, asks) {
  const text = [...bids, ...asks].map(([p, s]) => `${p}:${s}`).join('|');
  return crc32(new TextEncoder().encode(text));
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Compares two decimal strings (`-12.5`, `0.001`, `43250`) exactly, without floats. */
export function compareDecimal(a, b) {
  const negA = a.startsWith('-');
  const negB = b.startsWith('-');
  if (negA !== negB) return negA ? -1 : 1;
  const magnitude = compareMagnitude(negA ? a.slice(1) : a, negB ? b.slice(1) : b);
  return negA ? -magnitude : magnitude;
}

function compareMagnitude(a, b) {
  const [ai, af = ''] = a.split('.');
  const [bi, bf = ''] = b.split('.');
  const ia = ai.replace(/^0+(?=\d)/, '');
  const ib = bi.replace(/^0+(?=\d)/, '');
  if (ia.length !== ib.length) return ia.length < ib.length ? -1 : 1;
  if (ia !== ib) return ia < ib ? -1 : 1;
  const width = Math.max(af.length, bf.length);
  const fa = af.padEnd(width, '0');
  const fb = bf.padEnd(width, '0');
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

function isZero(size) {
  return /^-?0*(\.0*)?$/.test(size);
}

/** The levels a side `channel` carries: its `:DEPTH`, or every level. */
function depthOf(channel) {
  const parts = channel.split(':');
  const last = parts[parts.length - 1];
  return parts.length > 2 && /^\d+$/.test(last) ? Number(last) : Infinity;
}

/** Decodes a protobuf `Book` (ServerMessage field 25) with the client's field reader. */
export function decodeBook(bytes, readFields) {
  const text = new TextDecoder();
  const m = { type: 'book', channel: '', seq: 0, snapshot: false, bids: [], asks: [], checksum: 0, ts_ns: 0 };
  for (const [n, v] of readFields(bytes)) {
    if (n === 1) m.channel = text.decode(v);
    else if (n === 2) m.seq = Number(v);
    else if (n === 3) m.snapshot = v !== 0n;
    else if (n === 4 || n === 5) {
      const level = ['', ''];
      for (const [k, s] of readFields(v)) if (k === 1 || k === 2) level[k - 1] = text.decode(s);
      (n === 4 ? m.bids : m.asks).push(level);
    } else if (n === 6) m.checksum = Number(v);
    else if (n === 7) m.ts_ns = Number(v);
    else if (n === 8 && v !== 0n) m.from_seq = Number(v);
    else if (n === 9 && v.length) m.tier = text.decode(v);
  }
  return m;
}
