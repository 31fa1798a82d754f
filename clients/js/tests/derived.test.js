// Bars and tickers through the JS client in Node against the real relay binary: in each
// encoding they arrive typed ('bar_snapshot', 'bar', 'ticker'), each channel's seqs once
// and in order across a cut connection (resumed like any channel), and the closed bars are
// those of the trades, computed here.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../tickrelay.js';
import { Relay, Proxy, fastBackoff, WAIT_MS } from './support.js';

const S = 1_000_000_000;
// A price the generated trades never have (they are multiples of 0.25): the last trade's.
const MARKER = 0.125;

/** Each trade in its second's bar; a trade of a later second closes the open one. */
function closedSeconds(trades) {
  const closed = [];
  let open;
  for (const [ts] of trades) {
    const start = ts - (ts % S);
    if (open && open.start === start) open.trades++;
    else {
      if (open) closed.push(open);
      open = { start, trades: 1 };
    }
  }
  return closed.map((b) => `${b.start}:${b.trades}`);
}

async function publish(relay, symbol, trades) {
  const [host, port] = relay.ingest.split(':');
  const socket = net.connect(Number(port), host);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const text = trades.map(([ts, price]) => `{"symbol":"${symbol}","price":${price},"size":1,"ts_ns":${ts}}\n`).join('');
  await new Promise((resolve, reject) => socket.write(text, (e) => (e ? reject(e) : resolve())));
  await new Promise((resolve) => socket.end(resolve));
}

describe('bars and tickers', () => {
  let relay;
  // Bars close on trades only here (a day of grace); updates go out quickly.
  before(async () => { relay = await Relay.start(['--bar-grace', '24h', '--derived-interval', '20ms']); });
  after(async () => { await relay.stop(); });

  for (const encoding of ['json', 'gzip', 'protobuf']) {
    test(`${encoding}: typed, once and in order across a cut`, async () => {
      const symbol = `BAR-${encoding}`;
      // Whole seconds in the past; ts_ns below 2^53, exact as a JS number.
      const base = Math.floor(Date.now() / 1000 - 3600) * S;
      const trades = Array.from({ length: 600 }, (_, i) => [base + i * 330_000_000, 10 + (i % 23) / 4]);
      trades.push([trades[trades.length - 1][0] + 1_000_000, MARKER]);
      await publish(relay, symbol, trades.slice(0, 300));
      await relay.waitSeq(symbol, 300);
      const proxy = await Proxy.start(relay.http);
      const channels = [`bars:1s:${symbol}`, `ticker:${symbol}`];
      const client = await connect(proxy.url, { channels, encoding, backoff: fastBackoff });
      const seen = new Map(); // channel -> items
      let live = false;
      let cut = false;
      let connects = 0;
      try {
        const deadline = Date.now() + WAIT_MS;
        for (;;) {
          assert.ok(Date.now() < deadline, `timed out; saw ${JSON.stringify([...seen].map(([c, i]) => [c, i.length]))}`);
          const item = await client.next();
          assert.ok(!['gap', 'reset', 'error'].includes(item.type), JSON.stringify(item));
          if (item.type === 'connected') connects++;
          if (item.channel !== undefined) {
            if (!seen.has(item.channel)) seen.set(item.channel, []);
            seen.get(item.channel).push(item);
          }
          // Live after the snapshots (the ticker's comes last), then a cut mid-stream.
          if (!live && item.type === 'ticker') {
            live = true;
            await publish(relay, symbol, trades.slice(300, 450));
          }
          if (live && !cut && (seen.get(channels[0])?.length ?? 0) >= 20) {
            cut = true;
            proxy.cut();
            await publish(relay, symbol, trades.slice(450));
          }
          if (item.type === 'ticker' && item.last === MARKER) break;
        }
        assert.ok(cut && connects === 2, `cut and resumed: ${connects} connections`);
        for (const [channel, items] of seen) {
          const seqs = items.map((i) => i.seq);
          assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), `${channel}: each seq once, in order`);
        }
        const bars = seen.get(channels[0]);
        assert.equal(bars[0].type, 'bar_snapshot', JSON.stringify(bars[0]).slice(0, 200));
        assert.ok(bars.slice(1).every((b) => b.type === 'bar'));
        assert.ok(seen.get(channels[1]).every((t) => t.type === 'ticker'), 'a ticker snapshot reads as the ticker it is');
        const closed = [
          ...bars[0].bars.filter((b) => b.closed),
          ...bars.slice(1).filter((b) => b.closed),
        ].map((b) => `${b.start_ns}:${b.trades}`);
        const want = closedSeconds(trades);
        assert.deepEqual(closed, want.slice(want.length - closed.length), 'every closed bar once, across the cut');
        assert.ok(closed.length >= 60, 'the snapshot held the last 60 closed bars');
        const ticker = seen.get(channels[1]).at(-1);
        assert.equal(ticker.volume, trades.length);
        assert.equal(ticker.change, MARKER - 10);
      } finally {
        client.close();
        await proxy.close();
      }
    });
  }
});
