// tickrelay's operator dashboard: the script of the page at `/` (served at /dashboard.js).
//
// The numbers are GET /stats (the readings /metrics also renders, src/http/counters.rs),
// polled once a second. Totals and gauges are shown as /stats has them; rates and the recent
// latency percentiles come from two readings, timed by the relay's own `uptime_s`, so a
// throttled browser tab cannot distort them. A failed poll marks the page "disconnected" at
// once and retries with jittered exponential backoff; a relay that comes back restarted
// (uptime went down) starts its rates afresh instead of showing negative ones. Latency is
// only the relay's histogram (relay receive → socket write, one clock), never a browser clock
// against a source timestamp. The tick tape reads one symbol through the JS client.

import { connect } from '/tickrelay.js';

const POLL_MS = 1000;
const POLL_TIMEOUT_MS = 1500;
const BACKOFF = { initialMs: 500, maxMs: 5000 };
const WINDOW_S = 5; // rates and recent percentiles span about this much of the relay's time
// A rate over less than this much of the relay's time is noise (two readings 50 ms apart
// after a quick retry): the page shows none until the readings span it.
const MIN_SPAN_S = 0.9;
const TREND_S = 600; // the charts show the last 10 minutes of readings
const TAPE_ROWS = 25;
const SYMBOL = /^[A-Za-z0-9._:/-]{1,64}$/;

const $ = (id) => document.getElementById(id);
const history = []; // [{ at: uptime_s, stats }], oldest first, spanning about WINDOW_S
const trend = []; // [{ at: uptime_s, deliveries, ingest, p50, p99, sessions, slow }], one per reading
let failures = 0;
let downSince;

/** What the page shows, for tests and for an operator's console. */
const dashboard = { state: 'connecting', polls: 0, failures: 0, uptime_s: undefined, trend, tape: { state: 'connecting', symbol: undefined } };
window.dashboard = dashboard;

// --- /stats ------------------------------------------------------------------------------

async function poll() {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), POLL_TIMEOUT_MS);
  try {
    const response = await fetch('/stats', { cache: 'no-store', signal: controller.signal });
    if (response.status === 404) {
      throw new Unavailable('this port does not serve /stats (the relay runs with --admin-listen): read /stats there');
    }
    if (!response.ok) throw new Error(`/stats answered HTTP ${response.status}`);
    const stats = await response.json();
    failures = 0;
    dashboard.failures = 0;
    downSince = undefined;
    render(stats);
    setState(stats.phase === 'ready' ? 'live' : stats.phase, `relay phase ${stats.phase}`);
  } catch (e) {
    failures += 1;
    dashboard.failures = failures;
    downSince ??= new Date();
    const why = e.name === 'AbortError' ? `no answer within ${POLL_TIMEOUT_MS} ms` : e.message;
    const retry = delay(failures);
    setState(e instanceof Unavailable ? 'unavailable' : 'disconnected',
      `since ${downSince.toLocaleTimeString()} (${why}); retrying in ${(retry / 1000).toFixed(1)} s`);
    setTimeout(poll, retry);
    return;
  } finally {
    clearTimeout(timer);
  }
  setTimeout(poll, POLL_MS);
}

class Unavailable extends Error {}

/** Jittered exponential backoff: the delay before retry number `attempt` (from 1). */
function delay(attempt) {
  const base = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** Math.min(attempt - 1, 10));
  return base * (0.5 + Math.random() / 2);
}

function setState(state, detail) {
  dashboard.state = state;
  const feed = $('feed');
  feed.textContent = state;
  feed.className = state;
  $('detail').textContent = detail;
  $('main').classList.toggle('stale', state === 'disconnected' || state === 'unavailable');
}

function render(stats) {
  const now = stats.uptime_s;
  // A lower uptime is another relay (a restart): its counters start from zero.
  if (history.length && now < history.at(-1).at) {
    history.length = 0;
    trend.length = 0;
  }
  history.push({ at: now, stats });
  while (history.length > 2 && now - history[1].at >= WINDOW_S) history.shift();
  const base = history.length > 1 && now - history[0].at >= MIN_SPAN_S ? history[0] : undefined;
  const rate = (read) => (base ? perSecond(read(stats) - read(base.stats), now - base.at) : undefined);
  const shards = stats.shards ?? [];
  const sumShards = (key) => (s) => (s.shards ?? []).reduce((n, shard) => n + (shard[key] ?? 0), 0);

  put($('connections'), stats.sessions, count);
  put($('subscriptions'), subscriptions(stats), count);
  put($('deliveries_rate'), rate((s) => s.ticks_out), perSec);
  put($('ingest_rate'), rate((s) => s.ticks_in), perSec);
  put($('bytes_rate'), rate(sumShards('bytes_out')), bytes);
  put($('symbols'), stats.symbols, count);
  put($('ingest_connections'), stats.ingest?.connections, count);
  put($('uptime'), now, duration);

  latencyRow($('latency_total'), stats.latency_us);
  const recent = base ? windowed(base.stats.latency_us, stats.latency_us) : undefined;
  latencyRow($('latency_recent'), recent);
  const span = base ? String(Math.max(1, Math.round(now - base.at))) : '…';
  for (const el of document.querySelectorAll('.window')) el.textContent = span;
  histogram($('latency_histogram'), recent);

  for (const [id, read] of [['slow_disconnects', sumShards('slow_disconnects')], ['conflated', sumShards('conflated')],
    ['connections_refused', (s) => s.connections_refused ?? 0]]) {
    const row = $(id);
    put(row.querySelector('[data-k=total]'), read(stats), count);
    put(row.querySelector('[data-k=rate]'), rate(read), perSec);
  }

  const shardRates = shards.map((shard, i) => (base?.stats.shards?.[i] ? perSecond(shard.deliveries - base.stats.shards[i].deliveries, now - base.at) : undefined));
  const allRate = shardRates.reduce((n, r) => n + (r ?? 0), 0);
  rows($('shards'), shards.map((shard, i) => {
    const bytesRate = base?.stats.shards?.[i] ? perSecond(shard.bytes_out - base.stats.shards[i].bytes_out, now - base.at) : undefined;
    const share = allRate > 0 && shardRates[i] !== undefined ? shardRates[i] / allRate : 0;
    const load = `<span class="bar" style="width:${(share * 8).toFixed(2)}em"></span> ${Math.round(share * 100)} %`;
    return { id: `shard-${shard.id}`, cells: [{ text: shard.id }, [shard.sessions, count], [shard.connections, count], [shardRates[i], perSec],
      { html: load }, [bytesRate, bytes], [shard.latency_us?.p99, micros], [shard.slow_disconnects, count], [shard.conflated, count]] };
  }));

  const errors = Object.entries(stats.errors ?? {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [side, mine] of [['client', (code) => !RELAY_ERRORS.has(code)], ['relay', (code) => RELAY_ERRORS.has(code)]]) {
    const these = errors.filter(([code]) => mine(code));
    rows($(`errors_${side}`), these.map(([code, n]) => ({ id: `error-${code}`, cells: [{ text: code }, [n, count], [rate((s) => s.errors?.[code] ?? 0), perSec]] })));
    $(`errors_${side}`).hidden = these.length === 0;
    $(`errors_${side}_none`).hidden = these.length > 0;
  }

  const slowClosed = sumShards('slow_disconnects');
  trend.push({ at: now, deliveries: rate((s) => s.ticks_out), ingest: rate((s) => s.ticks_in), p50: recent?.p50, p99: recent?.p99,
    sessions: stats.sessions, slow: rate(slowClosed) });
  while (trend.length && now - trend[0].at > TREND_S) trend.shift();
  drawTrends(now);

  dashboard.polls += 1;
  dashboard.uptime_s = now;
}

/** Every subscription: by symbol name, to `*`, and to channels. */
function subscriptions(stats) {
  const sum = (o) => Object.values(o ?? {}).reduce((n, x) => n + x, 0);
  return sum(stats.subscriptions) + (stats.wildcard_subscriptions ?? 0) + sum(stats.channel_subscriptions);
}

function perSecond(delta, seconds) {
  return seconds > 0 && delta >= 0 ? delta / seconds : undefined;
}

/** The samples between two readings of a histogram (/stats lists each non-empty bucket as
 * [upper_us, samples since start]): their count, percentiles, and `buckets`, the samples
 * per bucket in the window, lowest bucket first. */
function windowed(before, after) {
  const old = new Map((before?.buckets ?? []).map(([upper, n]) => [upper, n]));
  const delta = (after?.buckets ?? []).map(([upper, n]) => [upper, n - (old.get(upper) ?? 0)]).filter(([, n]) => n > 0);
  delta.sort((a, b) => a[0] - b[0]);
  const total = delta.reduce((n, [, k]) => n + k, 0);
  const out = { count: total, buckets: delta };
  if (total === 0) return out;
  for (const [key, q] of [['p50', 0.5], ['p99', 0.99], ['p999', 0.999]]) {
    // The rank rule of the relay's own quantile (src/metrics.rs): the first bucket reaching it.
    const rank = Math.min(total, Math.max(1, Math.ceil(q * total)));
    let seen = 0;
    out[key] = delta.find(([, n]) => (seen += n) >= rank)[0];
  }
  return out;
}

function latencyRow(row, latency) {
  for (const key of ['p50', 'p99', 'p999']) put(row.querySelector(`[data-q=${key}]`), latency?.[key], micros);
  put(row.querySelector('[data-q=count]'), latency?.count, count);
}

/** Replaces a table's body with `items` ({ id, cells }): each cell a number as
 * `[value, format]`, `{ text }`, or `{ html }` (the page's own markup only). */
function rows(table, items) {
  const body = table.tBodies[0];
  body.replaceChildren(...items.map(({ id, cells }) => {
    const tr = document.createElement('tr');
    tr.id = id;
    for (const cell of cells) {
      const td = document.createElement('td');
      if ('text' in cell) td.textContent = cell.text;
      else if ('html' in cell) td.innerHTML = cell.html;
      else put(td, cell[0], cell[1]);
      tr.append(td);
    }
    return tr;
  }));
}

/** Shows `value` in `el` (its raw number in `data-value`; `—` when unknown). */
function put(el, value, format) {
  const known = typeof value === 'number' && Number.isFinite(value) && value >= 0;
  el.dataset.value = known ? String(value) : '';
  el.textContent = known ? format(value) : '—';
}

function count(n) {
  return Math.round(n).toLocaleString('en-US');
}

function perSec(r) {
  return r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US');
}

function bytes(b) {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) { b /= 1000; i += 1; }
  return `${b < 10 && i ? b.toFixed(1) : Math.round(b)} ${units[i]}`;
}

/** A latency in µs; the histogram's bounds are 1 µs to ~68 s, so nothing absurd gets here. */
function micros(us) {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function duration(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h ${String(m).padStart(2, '0')}m` : m ? `${m}m ${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

// --- trends and the latency histogram ----------------------------------------------------

/** Every error code the relay counts, by whose fault it is: the relay's own (its NATS link,
 * its shutdown) or its clients' and publishers' (input refused, answered and counted). Two
 * lists covering src/error.rs's `ErrorCode` exactly: tests/dashboard_codes.rs checks them. */
const CLIENT_ERRORS = new Set([
  'bad_json', 'bad_protobuf', 'invalid_symbol', 'not_finite', 'unknown_kind', 'missing_field', 'invalid_venue',
  'line_too_long', 'symbol_limit', 'bad_hello', 'publisher_limit', 'unknown_field', 'invalid_channel', 'event_too_large', 'event_too_deep', 'reserved_channel', 'bad_decimal', 'negative_size',
  'book_no_snapshot', 'book_crossed', 'book_too_deep', 'bad_message', 'unknown_op',
  'too_many_symbols', 'rate_limited', 'already_subscribed', 'binary_not_supported', 'message_too_big', 'protocol_error',
  'invalid_utf8', 'inflated_too_big', 'bad_deflate', 'bad_request', 'unknown_encoding', 'body_too_large', 'body_timeout', 'unsupported_media_type',
  'too_many_connections', 'handshake_timeout', 'tls_handshake', 'not_found', 'method_not_allowed', 'unknown_symbol',
  'auth_required', 'invalid_token', 'token_expired', 'forbidden', 'user_connection_limit', 'admin_required',
  'origin_not_allowed', 'unknown_session', 'slow_consumer', 'idle_timeout', 'wrong_role',
]);
const RELAY_ERRORS = new Set(['draining', 'shutting_down', 'nats_unavailable', 'bad_nats_message']);
dashboard.errorSides = { client: [...CLIENT_ERRORS], relay: [...RELAY_ERRORS] };

const SVG = 'http://www.w3.org/2000/svg';
const CHART = { w: 600, h: 150, left: 44, bottom: 16, top: 6 };
const COLOURS = ['#6b8cce', '#b42318'];

function drawTrends(now) {
  const series = (key) => trend.filter((p) => p[key] !== undefined).map((p) => [p.at, p[key]]);
  const last = (key) => series(key).at(-1)?.[1];
  chart($('chart_deliveries'), now, [series('deliveries')], perSec);
  chart($('chart_ingest'), now, [series('ingest')], perSec);
  chart($('chart_latency'), now, [series('p50'), series('p99')], micros);
  chart($('chart_sessions'), now, [series('sessions')], count);
  chart($('chart_slow'), now, [series('slow')], perSec);
  const show = (id, value, format) => { $(id).textContent = value === undefined ? '' : `now ${format(value)}`; };
  show('now_deliveries', last('deliveries'), perSec);
  show('now_ingest', last('ingest'), perSec);
  show('now_latency', last('p99'), (v) => `p99 ${micros(v)}`);
  show('now_sessions', last('sessions'), count);
  show('now_slow', last('slow'), perSec);
}

/** Draws `lines` ([[at, value], ...] each) over the last TREND_S seconds ending at `now`
 * (the relay's uptime of the newest reading), y from 0 to the largest value. */
function chart(svg, now, lines, format) {
  const { w, h, left, bottom, top } = CHART;
  const max = Math.max(0, ...lines.flat().map(([, v]) => v));
  const ceiling = niceCeiling(max);
  const x = (at) => left + (w - left) * (1 - (now - at) / TREND_S);
  const y = (v) => h - bottom - (h - bottom - top) * (ceiling > 0 ? v / ceiling : 0);
  const parts = [
    el('line', { x1: left, x2: w, y1: h - bottom, y2: h - bottom, stroke: '#c9ced4' }),
    el('line', { x1: left, x2: w, y1: top, y2: top, stroke: '#e3e6ea' }),
    label(format(ceiling), left - 4, top + 8, 'end'),
    label('0', left - 4, h - bottom, 'end'),
    label('−10 min', left, h - 3, 'start'),
    label('−5 min', left + (w - left) / 2, h - 3, 'middle'),
    label('newest reading', w, h - 3, 'end'),
  ];
  lines.forEach((points, i) => {
    if (points.length === 0) return;
    const d = points.map(([at, v]) => `${x(at).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    parts.push(el('polyline', { points: d, fill: 'none', stroke: COLOURS[i % COLOURS.length], 'stroke-width': 1.5 }));
  });
  if (lines.every((points) => points.length === 0)) parts.push(label('no readings yet', (w + left) / 2, h / 2, 'middle'));
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.dataset.points = String(lines.reduce((n, points) => n + points.length, 0));
  svg.replaceChildren(...parts);
}

/** Bars of the deliveries per latency bucket in `recent` (a windowed histogram). */
function histogram(svg, recent) {
  const { w, h, left, bottom, top } = CHART;
  const buckets = recent?.buckets ?? [];
  const most = Math.max(0, ...buckets.map(([, n]) => n));
  const parts = [el('line', { x1: left, x2: w, y1: h - bottom, y2: h - bottom, stroke: '#c9ced4' }), label('0', left - 4, h - bottom, 'end')];
  if (most > 0) {
    parts.push(label(count(most), left - 4, top + 8, 'end'));
    const slot = (w - left) / buckets.length;
    buckets.forEach(([upper, n], i) => {
      const height = (h - bottom - top) * (n / most);
      parts.push(el('rect', { x: left + i * slot + 1, y: h - bottom - height, width: Math.max(1, slot - 2), height, fill: COLOURS[0] }));
      if (buckets.length <= 12 || i % Math.ceil(buckets.length / 12) === 0) parts.push(label(`≤${micros(upper)}`, left + (i + 0.5) * slot, h - 3, 'middle'));
    });
  } else {
    parts.push(label(recent ? 'no deliveries in this window' : 'measuring…', (w + left) / 2, h / 2, 'middle'));
  }
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.dataset.points = String(buckets.length);
  svg.replaceChildren(...parts);
}

/** 1, 2 or 5 times a power of ten at or above `v` (a readable top of a y axis). */
function niceCeiling(v) {
  if (!(v > 0)) return 0;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * power).find((c) => c >= v);
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function label(text, x, y, anchor) {
  const node = el('text', { x, y, 'text-anchor': anchor });
  node.textContent = text;
  return node;
}

// --- the tick tape -------------------------------------------------------------------------

let tape;

async function startTape() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const wanted = new URLSearchParams(location.search).get('symbol');
  dashboard.tape.symbol = wanted && SYMBOL.test(wanted) ? wanted : await defaultSymbol();
  $('symbol').value = dashboard.tape.symbol ?? '';
  for (let attempt = 1; ; attempt += 1) {
    try {
      const symbols = dashboard.tape.symbol ? [dashboard.tape.symbol] : [];
      tape = await connect(`${scheme}://${location.host}/ws`, { symbols });
      break;
    } catch (e) {
      const retry = delay(attempt);
      tapeState('disconnected', `retrying in ${(retry / 1000).toFixed(1)} s`);
      await new Promise((resolve) => setTimeout(resolve, retry));
    }
  }
  try {
    for await (const item of tape) onTapeItem(item);
  } catch (e) {
    tapeState('stopped', e.message);
  }
}

async function defaultSymbol() {
  const list = await symbolList();
  return list.includes('BTC-USD') ? 'BTC-USD' : list[0];
}

/** The relay's symbols (into the input's suggestions); [] when it cannot be read. */
async function symbolList() {
  try {
    const response = await fetch('/symbols', { cache: 'no-store' });
    const { symbols } = await response.json();
    const names = symbols.map((s) => s.symbol);
    $('symbol_list').replaceChildren(...names.map((name) => Object.assign(document.createElement('option'), { value: name })));
    return names;
  } catch {
    return [];
  }
}

function onTapeItem(item) {
  const symbol = dashboard.tape.symbol;
  switch (item.type) {
    case 'tick':
    case 'snapshot':
      if (item.symbol === symbol) tapeRow(item.type, [time(item.ts_ns), item.seq, item.kind, item.price, item.size, item.bid, item.ask]);
      break;
    case 'gap':
      if (item.symbol === symbol) tapeRow('gap', [`missed seqs ${item.from}–${item.to} (${item.reason})`]);
      break;
    case 'reset':
      if (item.symbol === symbol) tapeRow('reset', [`history restarted at seq ${item.seq}`]);
      break;
    case 'connected':
      tapeState('live', '');
      break;
    case 'disconnected':
      tapeState('disconnected', `${item.code ?? ''} ${item.reason}; reconnecting`);
      tapeRow('down', [`disconnected: ${item.reason}`]);
      break;
    default:
  }
}

function tapeRow(kind, cells) {
  const tr = document.createElement('tr');
  tr.className = kind;
  for (const value of cells) {
    const td = document.createElement('td');
    td.textContent = value ?? '';
    tr.append(td);
  }
  if (cells.length === 1) tr.cells[0].colSpan = 7;
  const body = $('tape').tBodies[0];
  body.prepend(tr);
  while (body.rows.length > TAPE_ROWS) body.lastElementChild.remove();
}

function tapeState(state, detail) {
  dashboard.tape.state = state;
  $('tape_state').textContent = detail ? `${state}: ${detail}` : state;
}

/** The source time of a tick, UTC with milliseconds (not compared with this browser's clock). */
function time(tsNs) {
  const date = new Date(tsNs / 1e6);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString().slice(11, 23);
}

$('symbol').addEventListener('change', () => {
  const next = $('symbol').value.trim();
  const previous = dashboard.tape.symbol;
  if (!SYMBOL.test(next) || next === previous) return;
  dashboard.tape.symbol = next;
  $('tape').tBodies[0].replaceChildren();
  if (tape) {
    if (previous) tape.unsubscribe([previous]);
    tape.subscribe([next]);
  }
});

setInterval(symbolList, 10000);
poll();
startTape();
