#!/usr/bin/env bash
# The NATS hop measured side by side (docs/SCALING.md, "Measured"): --role all of this
# commit and of the previous one ($BASELINE), a sequencer + 1 edge, a sequencer + 2 edges.
# Raw output (each run's JSON report and printed table, the relays' logs, /stats of the
# sequencer and the first edge) goes to $OUT, default target/perf/scaling/ (ignored by git);
# the figures people read are in docs/SCALING.md.
#
#   cargo build --release -p tickrelay -p loadtest
#   BASELINE=/tmp/tickrelay-main loadtest/scaling.sh
set -u
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
LT=$target/release/loadtest; R=$target/release/tickrelay; OUT=${OUT:-$target/perf/scaling}
BASELINE=${BASELINE:?set BASELINE to the previous commit\'s release tickrelay}
mkdir -p "$OUT"
LOAD=(--clients 400 --symbols 100 --symbols-per-client 10 --mix json=100 --rate 2500 --duration 15s --max-time 120s)
run_all() { # label binary
  timeout 150 $LT steady --spawn "$2" --relay-args "--shards 1" "${LOAD[@]}" --label "$1" \
    --relay-log "$OUT/$1-relay.log" --report-json "$OUT/$1.json" > "$OUT/$1.txt" 2>&1
}
run_nats() { # label edges...
  local label=$1; shift
  local D; D=$(mktemp -d)
  nats-server -js -sd "$D" -a 127.0.0.1 -p 14333 >/dev/null 2>&1 & local NS=$!
  sleep 0.5
  $R --role sequencer --nats nats://127.0.0.1:14333 --listen 127.0.0.1:19080 --ingest-tcp 127.0.0.1:19001 --ingest-tcp-protobuf 127.0.0.1:19002 --shards 1 > "$OUT/$label-seq.log" 2>&1 & local S=$!
  sleep 0.5
  local pids=() first="" more=()
  for port in "$@"; do
    $R --role edge --nats nats://127.0.0.1:14333 --listen 127.0.0.1:$port --shards 1 > "$OUT/$label-edge-$port.log" 2>&1 & pids+=($!)
    if [ -z "$first" ]; then first=$port; else more+=(--also-relay 127.0.0.1:$port); fi
  done
  sleep 1
  timeout 150 $LT steady --relay 127.0.0.1:$first "${more[@]}" --ingest 127.0.0.1:19001 --relay-pid ${pids[0]} "${LOAD[@]}" --label "$label" --report-json "$OUT/$label.json" > "$OUT/$label.txt" 2>&1
  curl -s 127.0.0.1:$first/stats > "$OUT/$label-edge1-stats.json"
  curl -s 127.0.0.1:19080/stats > "$OUT/$label-sequencer-stats.json"
  kill "${pids[@]}" $S; sleep 1; kill $NS; wait 2>/dev/null; rm -rf "$D"
}
nproc > "$OUT/cores"; uptime > "$OUT/uptime"
run_all all-branch $R
run_all all-main "$BASELINE"
run_nats nats-1edge 19081
run_nats nats-2edges 19081 19082
run_all all-branch-again $R
run_all all-main-again "$BASELINE"
uptime >> "$OUT/uptime"
echo "wrote $OUT"
