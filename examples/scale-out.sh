#!/usr/bin/env bash
# Scale-out on one machine (docs/SCALING.md): a nats-server with JetStream, one sequencer
# (ingest and seq) and two edges (clients), on ports that leave the demo's alone:
#
#   nats-server       nats://127.0.0.1:14222   (store in a temporary directory)
#   sequencer         http://127.0.0.1:8090    ingest NDJSON 127.0.0.1:7101, protobuf :7102
#   edge A            ws://127.0.0.1:8091/ws
#   edge B            ws://127.0.0.1:8092/ws
#
#   bash examples/scale-out.sh           # start them, print what to try, stop on Ctrl-C
#   bash examples/scale-out.sh --check   # start them, publish one tick, see it on both edges, stop
#
# Needs nats-server (bash .ci/packages.sh installs Debian's) and the release binaries,
# built here when missing; RELAY_BIN and TAIL_BIN choose others (CI uses debug builds).
# Every process started here is stopped when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${RELAY_BIN:-target/release/tickrelay}
tail_bin=${TAIL_BIN:-target/release/examples/tail}
if [ ! -x "$bin" ] || [ ! -x "$tail_bin" ]; then
    echo "building the release binaries (a few minutes the first time)"
    cargo build --release --bin tickrelay --example tail
fi
command -v nats-server >/dev/null || { echo "nats-server is missing: bash .ci/packages.sh" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

nats=nats://127.0.0.1:14222
work=$(mktemp -d)
pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

# In any order: the relays retry the first NATS connect and the edges wait for the
# sequencer's epoch (their /ready answers 503 meanwhile).
nats-server -js -sd "$work/nats" -a 127.0.0.1 -p 14222 >"$work/nats.log" 2>&1 &
pids+=($!)
"$bin" --role sequencer --nats "$nats" --listen 127.0.0.1:8090 \
    --ingest-tcp 127.0.0.1:7101 --ingest-tcp-protobuf 127.0.0.1:7102 >"$work/sequencer.out" 2>"$work/sequencer.log" &
pids+=($!)
for port in 8091 8092; do
    "$bin" --role edge --nats "$nats" --listen "127.0.0.1:$port" >"$work/edge-$port.out" 2>"$work/edge-$port.log" &
    pids+=($!)
done

# ready PORT: waits (up to 90 s) for GET /ready to answer 200, failing at once if a
# process started here has exited.
ready() {
    for _ in $(seq 1 450); do
        if curl -sf "http://127.0.0.1:$1/ready" >/dev/null 2>&1; then return 0; fi
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "a process exited early" >&2; break 2; }
        done
        sleep 0.2
    done
    echo "127.0.0.1:$1 did not become ready; its log:" >&2
    cat "$work"/*.log >&2
    return 1
}
for port in 8090 8091 8092; do ready "$port"; done
echo "nats-server, a sequencer and two edges are ready"

if [ "${1:-}" != --check ]; then
    cat <<'EOF'
Try, in another terminal:
  target/release/examples/tail --url ws://127.0.0.1:8091/ws SCALE-1 &
  target/release/examples/tail --url ws://127.0.0.1:8092/ws SCALE-1 &
  echo '{"symbol":"SCALE-1","price":10.5,"size":1,"ts_ns":1764000000000000000}' > /dev/tcp/127.0.0.1/7101
Both edges print the same tick, seq 1, under the same epoch. Ctrl-C here stops everything.
EOF
    wait
    exit 0
fi

# --check: one tick in at the sequencer, the same tick out of both edges.
for port in 8091 8092; do
    "$tail_bin" --url "ws://127.0.0.1:$port/ws" SCALE-1 >"$work/tail-$port.out" 2>"$work/tail-$port.log" &
    pids+=($!)
done
# Each tail says on stderr when it is connected: then the tick arrives live, not as a snapshot.
for port in 8091 8092; do
    for _ in $(seq 1 300); do
        grep -q connected "$work/tail-$port.log" && break
        sleep 0.2
    done
done
echo '{"symbol":"SCALE-1","price":10.5,"size":1,"ts_ns":1764000000000000000}' > /dev/tcp/127.0.0.1/7101
for port in 8091 8092; do
    for _ in $(seq 1 300); do
        grep -q '"symbol":"SCALE-1","seq":1' "$work/tail-$port.out" && break
        sleep 0.2
    done
    if ! grep -q '"symbol":"SCALE-1","seq":1' "$work/tail-$port.out"; then
        echo "edge 127.0.0.1:$port did not deliver SCALE-1; tail said:" >&2
        cat "$work/tail-$port.out" "$work/tail-$port.log" >&2
        exit 1
    fi
    echo "edge $port: $(grep -m1 '"symbol":"SCALE-1"' "$work/tail-$port.out")"
done
echo "ok: one tick in at the sequencer, the same tick out of both edges"
