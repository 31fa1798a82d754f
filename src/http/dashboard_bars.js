// The dashboard's bars panel: the tape symbol's 1 s bars (a candle chart of the last minute)
// and its 24-hour statistics, from the relay's `bars:1s:SYMBOL` and `ticker:SYMBOL` channels
// (docs/PROTOCOL.md, "Bars and tickers") through the JS client. A script of its own beside
// the page's: it follows the tape's symbol (the page's `#symbol` input, and `?symbol=`),
// and shows what the relay computed, never a figure of its own. `window.dashboardBars`
// holds what it shows, for tests.

import { connect } from '/tickrelay.js';

const BARS = 60; // a minute of 1 s bars: the relay's default snapshot holds as many
const WIDTH = 360;
const HEIGHT = 120;
const SYMBOL = /^[A-Za-z0-9._:/-]{1,64}$/;
const state = { symbol: undefined, state: 'idle', bars: [], ticker: undefined };
window.dashboardBars = state;

const panel = document.createElement('section');
panel.id = 'bars_panel';
panel.innerHTML = `
 <h2>1 s bars and 24 h <span id="bars_symbol"></span> <span id="bars_state" class="muted"></span></h2>
 <svg id="bars_chart" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="1 second bars"></svg>
 <table id="ticker">
  <thead><tr><th>last</th><th>change</th><th>change %</th><th>high</th><th>low</th><th>volume</th></tr></thead>
  <tbody><tr>${['last', 'change', 'change_percent', 'high', 'low', 'volume'].map((k) => `<td data-k="${k}"></td>`).join('')}</tr></tbody>
 </table>`;
(document.getElementById('tape')?.closest('section') ?? document.body.lastElementChild).after(panel);
const style = document.createElement('style');
style.textContent = '#bars_chart { display: block; background: var(--card, #f6f7f9); margin: .3em 0; }'
  + ' #bars_chart .up { fill: var(--up, #11803b); stroke: var(--up, #11803b); }'
  + ' #bars_chart .down { fill: var(--down, #b42318); stroke: var(--down, #b42318); }'
  + ' #bars_chart .open { opacity: .55; }';
document.head.append(style);

let client;

/** Follows `symbol`: a fresh connection to its bars and ticker (the last one closed). */
async function follow(symbol) {
  if (!SYMBOL.test(symbol ?? '') || symbol === state.symbol) return;
  client?.close();
  Object.assign(state, { symbol, bars: [], ticker: undefined });
  document.getElementById('bars_symbol').textContent = symbol;
  render();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const channels = [`bars:1s:${symbol}`, `ticker:${symbol}`];
  try {
    const mine = await connect(`${scheme}://${location.host}/ws`, { channels });
    if (state.symbol !== symbol) return mine.close();
    client = mine;
    for await (const item of mine) onItem(item);
  } catch (e) {
    show('stopped', e.message);
  }
}

function onItem(item) {
  switch (item.type) {
    case 'bar_snapshot':
      state.bars = item.bars.slice(-BARS);
      break;
    case 'bar': {
      const at = state.bars.findIndex((b) => b.start_ns === item.start_ns);
      const bar = { start_ns: item.start_ns, open: item.open, high: item.high, low: item.low, close: item.close, volume: item.volume, trades: item.trades, closed: item.closed };
      if (at >= 0) state.bars[at] = bar;
      else state.bars = [...state.bars, bar].slice(-BARS);
      break;
    }
    case 'ticker':
      state.ticker = item;
      break;
    case 'gap':
    case 'reset':
      // Bars were missed: the next snapshot or bar rebuilds the chart; say so meanwhile.
      show('live', `missed ${item.channel} seqs`);
      return;
    case 'connected':
      show('live', '');
      return;
    case 'disconnected':
      show('disconnected', 'reconnecting');
      return;
    default:
      return;
  }
  render();
}

function render() {
  const svg = document.getElementById('bars_chart');
  const bars = state.bars;
  const high = Math.max(...bars.map((b) => b.high));
  const low = Math.min(...bars.map((b) => b.low));
  const y = (price) => (high === low ? HEIGHT / 2 : 4 + ((high - price) / (high - low)) * (HEIGHT - 8));
  const step = WIDTH / BARS;
  svg.replaceChildren(...bars.map((b, i) => {
    const g = document.createElementNS('http://www.w3.org/2000/svg', 'g');
    g.setAttribute('class', `${b.close >= b.open ? 'up' : 'down'}${b.closed ? '' : ' open'}`);
    for (const k of ['start_ns', 'open', 'high', 'low', 'close', 'trades']) g.dataset[k] = String(b[k]);
    const x = i * step + step / 2;
    const wick = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    Object.entries({ x1: x, x2: x, y1: y(b.high), y2: y(b.low) }).forEach(([k, v]) => wick.setAttribute(k, v));
    const body = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    const top = Math.min(y(b.open), y(b.close));
    Object.entries({ x: x - step * 0.35, y: top, width: step * 0.7, height: Math.max(1, Math.abs(y(b.open) - y(b.close))) })
      .forEach(([k, v]) => body.setAttribute(k, v));
    g.append(wick, body);
    return g;
  }));
  for (const td of document.querySelectorAll('#ticker td')) {
    const value = state.ticker?.[td.dataset.k];
    td.dataset.value = value === undefined ? '' : String(value);
    td.textContent = value === undefined ? '' : td.dataset.k === 'change_percent' ? `${value.toFixed(2)} %` : String(value);
  }
}

function show(status, detail) {
  state.state = status;
  document.getElementById('bars_state').textContent = detail ? `${status}: ${detail}` : status;
}

const input = document.getElementById('symbol');
input?.addEventListener('change', () => follow(input.value.trim()));
// The page settles its tape's symbol first (from ?symbol= or the relay's list): follow it.
const wanted = new URLSearchParams(location.search).get('symbol');
if (wanted) follow(wanted);
else {
  const settled = setInterval(() => {
    if (input?.value) {
      clearInterval(settled);
      follow(input.value.trim());
    }
  }, 200);
}
