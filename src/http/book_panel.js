// The dashboard's order-book panel (served at /book-panel.js, loaded by the page at `/`):
// the top 10 levels a side of one book, live, through the JavaScript client, which keeps the
// book and verifies the relay's checksum after every update. It follows the full book
// (`book:SYMBOL`, offered whatever `--book-depths` says) and shows its best levels.
// `?book=SYMBOL` picks the book (default: the page's `?symbol=`, else BTC-USD). `window.bookPanel` holds what is shown,
// for tests: { state, channel, seq, checksum, bids, asks, resyncs }.

import { connect } from '/tickrelay.js';

const SHOWN = 10;
const params = new URLSearchParams(location.search);
const symbol = params.get('book') ?? params.get('symbol') ?? 'BTC-USD';
const channel = `book:${symbol}`;
const panel = { state: 'connecting', channel, seq: undefined, checksum: undefined, bids: [], asks: [], resyncs: 0 };
window.bookPanel = panel;

function section() {
  let el = document.getElementById('book-panel');
  if (!el) {
    el = document.createElement('section');
    el.id = 'book-panel';
    (document.getElementById('main') ?? document.body).append(el);
  }
  return el;
}

function render() {
  const el = section();
  const rows = (levels, side) => levels.map(([price, size]) => `<tr class="${side}"><td>${side}</td><td>${price}</td><td>${size}</td></tr>`).join('');
  const asks = [...panel.asks].reverse();
  el.innerHTML = `<h2>order book <code>${channel}</code></h2>
<p><span id="book-state">${panel.state}</span> · seq <span id="book-seq">${panel.seq ?? '–'}</span> · checksum <span id="book-checksum">${panel.checksum ?? '–'}</span> (verified)</p>
<table id="book"><thead><tr><th>side</th><th>price</th><th>size</th></tr></thead><tbody>${rows(asks, 'ask')}${rows(panel.bids, 'bid')}</tbody></table>`;
}

async function run() {
  render();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const client = await connect(`${scheme}://${location.host}/ws`, { channels: [channel] });
  for await (const item of client) {
    if (item.type === 'book') {
      const [bids, asks] = [item.bids.slice(0, SHOWN), item.asks.slice(0, SHOWN)];
      Object.assign(panel, { state: 'live', seq: item.seq, checksum: item.checksum, bids, asks });
    } else if (item.type === 'book_resync') {
      panel.resyncs += 1;
      panel.state = 'fetching the book again';
    } else if (item.type === 'disconnected') {
      panel.state = 'disconnected';
    }
    render();
  }
}

run().catch((e) => {
  panel.state = `error: ${e.message}`;
  render();
});
