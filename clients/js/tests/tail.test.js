// Smoke tests of the two tail tools, examples/python/tail.py and the Rust client's `tail`
// example, against the real relay: a cut connection is resumed gap-free, and a relay restart
// whose new history passes the client's position is printed as a reset, never spliced.
// Needs python3 with `websockets` and the built example (clients/js/ci.sh sees to both).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Relay, Proxy, Tracker, waitFor, repoRoot, FrameEncoder, ScriptServer, msg } from './support.js';

const python = path.join(repoRoot, 'examples/python/tail.py');
const rustTail = process.env.TEST_TAIL_BIN ?? path.join(repoRoot, 'target/debug/examples/tail');

test('examples/python/tail.py resumes after a cut and reports a relay restart as a reset', async () => {
  await tailSurvivesCutsAndRestarts((url) => [process.env.PYTHON ?? 'python3', [python, '--url', url, '--max-backoff', '0.2', '--encoding', 'gzip', 'PY']]);
});

test('the Rust tail example resumes after a cut and reports a relay restart as a reset', async () => {
  assert.ok(existsSync(rustTail), `no ${rustTail}: run cargo build --example tail (or set TEST_TAIL_BIN)`);
  await tailSurvivesCutsAndRestarts((url) => [rustTail, ['--url', url, '--encoding', 'protobuf', 'PY']]);
});

for (const encoding of ['json', 'gzip']) {
  test(`examples/python/tail.py (${encoding}) prints what json.loads refuses as undecodable and goes on`, async () => {
    // Exact frames from a scripted server: a relay passes on event data as deep as its size
    // limit allows (json.loads gives up near 1,000 levels), and never sends a broken tick.
    const frames = new FrameEncoder(encoding);
    const deep = (n) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const script = [
      msg.welcome(1),
      msg.tick('PY', 1),
      msg.event('news', 1, deep(8000)),
      msg.raw(`{"type":"tick","symbol":"PY","seq":2,"kind":"trade","ts_ns":2,"recv_ns":2,"price":${deep(5000)}}`, []),
      msg.raw('{"type":', []),
      msg.tick('PY', 3),
    ].map((m) => frames.frame([m]));
    const server = await ScriptServer.start([script]);
    const child = spawn(process.env.PYTHON ?? 'python3', [python, '--url', server.url, '--encoding', encoding, 'PY'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = [];
    let stderr = '';
    child.stdout.on('data', (d) => { lines.push(...String(d).split('\n').filter(Boolean).map((l) => JSON.parse(l))); });
    child.stderr.on('data', (d) => { stderr += d; });
    try {
      await waitFor('tail.py to print PY seq 3', () => {
        if (child.exitCode !== null) throw new Error(`tail.py exited with ${child.exitCode}: ${stderr}`);
        return lines.some((l) => l.type === 'tick' && l.seq === 3);
      });
      assert.deepEqual(lines.map((l) => [l.type, l.symbol, l.seq].filter((x) => x !== undefined).join(' ')), ['tick PY 1', 'undecodable PY 2', 'undecodable', 'tick PY 3']);
      assert.doesNotMatch(stderr, /disconnected/, 'no reconnect');
      assert.equal(server.requests.length, 1);
    } finally {
      child.kill('SIGTERM');
      await server.close();
    }
  });
}

async function tailSurvivesCutsAndRestarts(command) {
  const relay = await Relay.start();
  const proxy = await Proxy.start(relay.http);
  const [program, args] = command(proxy.url);
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  let buffered = '';
  child.stdout.on('data', (d) => {
    buffered += d;
    const parts = buffered.split('\n');
    buffered = parts.pop();
    for (const p of parts) lines.push(JSON.parse(p));
  });
  child.stderr.on('data', (d) => { stderr += d; });
  const seen = (seq, tag) => () => {
    if (child.exitCode !== null) throw new Error(`${program} exited with ${child.exitCode}: ${stderr}`);
    return lines.some((l) => l.seq === seq && (l.type === 'tick' || l.type === 'snapshot') && Math.floor(l.ts_ns / 1e9) === tag);
  };
  try {
    await waitFor('tail to connect', () => {
      if (child.exitCode !== null) throw new Error(`${program} exited with ${child.exitCode}: ${stderr}`);
      return stderr.includes('"connected"');
    });
    await relay.publish('PY', 100, { tag: 1 });
    await waitFor('tail to print PY seq 100', seen(100, 1));
    proxy.cut();
    await relay.publish('PY', 100, { tag: 1 });
    await waitFor('tail to print PY seq 200 after the cut', seen(200, 1));
    proxy.down = true;
    await relay.restart();
    await relay.publish('PY', 300, { tag: 2 });
    await relay.waitSeq('PY', 300);
    proxy.down = false;
    await waitFor('tail to print PY seq 300 of the new history', seen(300, 2));

    const tracker = new Tracker();
    for (const line of lines) tracker.feed(line);
    assert.deepEqual(tracker.gaps, []);
    assert.equal(tracker.resets.length, 1, JSON.stringify(tracker.resets));
    // Both tails resume with their epoch: the relay answers reset + the new history's newest.
    assert.deepEqual([tracker.resets[0].last_seq, tracker.resets[0].seq], [200, 300]);
    const before = lines.slice(0, lines.indexOf(lines.find((l) => l.type === 'reset')));
    assert.deepEqual(before.map((l) => l.seq), Array.from({ length: 200 }, (_, i) => i + 1), 'seqs 1..200 once each before the restart');
    assert.ok(tracker.seqs.get('PY').every(([, ts]) => Math.floor(ts / 1e9) === 2), 'only the new history after the reset');
    assert.match(stderr, /"disconnected"/);
  } finally {
    child.kill('SIGTERM');
    await proxy.close();
    await relay.stop();
  }
}
