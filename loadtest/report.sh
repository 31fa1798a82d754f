#!/usr/bin/env bash
# Builds tickrelay and the load-test harness (release), runs a bounded set of load tests against
# a relay the harness spawns on free loopback ports, and writes docs/perf/*.json,
# docs/perf/latency.svg and the Markdown summary docs/perf/REPORT.md; then the side-by-side runs
# against the floor and naive reference servers into docs/perf/compare-*.json|txt, whose ratio
# tables end REPORT.md.
#
# Every run is bounded (--max-time) and talks to 127.0.0.x only. The machines cap open files at
# 20,000 per process, so the crowd run stays at 19,000 clients: the harness holds one socket
# per client, the relay one per connection plus listeners and ingest.
#
#   loadtest/report.sh               # all runs, about 6 minutes on 2 cores, then the comparisons
#   ONLY=compare loadtest/report.sh  # only the side-by-side runs against the reference servers
#   OUT=/tmp/perf loadtest/report.sh # somewhere else
#   CARGO_TARGET_DIR=/work/target-lt loadtest/report.sh
#   ROUNDS=5 loadtest/report.sh      # side-by-side rounds (default 3; 1 = a single pair)
set -euo pipefail

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="${OUT:-docs/perf}"

cargo build --release --bin tickrelay
cargo build --release -p loadtest --bin loadtest
lt="$target/release/loadtest"
relay="$target/release/tickrelay"
mkdir -p "$out"

common=(--spawn "$relay" --max-time 5m)
[ -t 2 ] || common+=(--no-progress)
failed=0

# run NAME MODE ARGS...: one bounded harness run writing $out/NAME.json.
run() {
    local name=$1 mode=$2
    shift 2
    echo "== $name: loadtest $mode $*"
    if ! timeout 420 "$lt" "$mode" "${common[@]}" --label "$name" \
        --relay-log "${TMPDIR:-/tmp}/tickrelay-$name.log" --report-json "$out/$name.json" "$@"; then
        echo "!! $name failed (exit $?)"
        failed=1
    fi
}

# compare NAME ARGS...: the same load against floor, naive and the relay in one invocation
# (heavy clients, JSON); writes $out/NAME-{floor,naive,relay}.json and $out/NAME.txt, whose last
# table is relay ÷ floor and relay ÷ naive, per step, for throughput and p99.
compare() {
    local name=$1
    shift
    echo "== $name: loadtest compare $*"
    if ! timeout 1200 "$lt" compare "${common[@]}" --label "$name" \
        --relay-log "${TMPDIR:-/tmp}/tickrelay-$name.log" --report-json "$out/$name.json" "$@" \
        | tee "$out/$name.txt"; then
        echo "!! $name failed (exit $?)"
        failed=1
    fi
}

runs=(steady-1000x10 steady-5000x5 crowd-19000 crowd-burst slow-10pct ramp)
if [ "${ONLY:-}" = compare ]; then
    runs=()
else
    run steady-1000x10 steady --clients 1000 --symbols 100 --symbols-per-client 10 \
        --rate 2000 --duration 20s
    run steady-5000x5 steady --clients 5000 --symbols 100 --symbols-per-client 5 \
        --rate 1000 --duration 20s --connect-rate 4000
    # The relay's default --max-connections is 19,000; HTTP probes (/health, /stats) count too.
    run crowd-19000 crowd --clients 19000 --symbols 100 --symbols-per-client 5 \
        --duration 10s --connect-rate 4000 --source-ips 4 --settle 2s \
        --relay-args "--max-connections 19500"
    # A connect storm: 10,000 clients offered at 10,000/s (handshake latency under a burst).
    run crowd-burst crowd --clients 10000 --symbols 100 --symbols-per-client 5 \
        --duration 1s --connect-rate 10000 --source-ips 4 --settle 1s
    # Every client takes all 10 symbols (JSON, ~115 B a tick): each stuck client falls ~290 KB/s
    # behind, past the ~4 MB the kernel's loopback send buffer absorbs by itself within ~15 s, so
    # the relay's own slow-consumer policy is what the second half of the run exercises.
    run slow-10pct slow --clients 100 --symbols 10 --symbols-per-client 10 --mix json=1 \
        --rate 2500 --duration 25s --slow-fraction 0.1
    run ramp ramp --clients 500 --symbols 100 --symbols-per-client 10 \
        --rate 1000 --step-duration 5s --max-steps 8 --p99-bound-ms 10 --svg "$out/latency.svg"
fi

# Issue 9's side-by-side runs: a fan-out ramp in √2 steps (a step holds with no loss and
# p99 < 50 ms) and a crowd at 1,000 ticks/s. Three servers in a row open three times the
# connections within a minute: --source-ips spreads them past ports still in TIME_WAIT.
# --rounds repeats each set, every other round in reverse order, and ends with the median and
# range of each ratio: one pair moves with the host too much to carry a claim alone.
rounds=(--rounds "${ROUNDS:-3}")
compare compare-fanout "${rounds[@]}" --shape ramp --clients 1000 --symbols 100 --symbols-per-client 10 \
    --mix json=1 --rate 1000 --step-factor 1.4142 --step-duration 5s --max-steps 12 \
    --p99-bound-ms 50 --source-ips 2
compare compare-crowd "${rounds[@]}" --shape crowd --clients 5000 --symbols 100 --symbols-per-client 5 \
    --mix json=1 --rate 1000 --duration 10s --connect-rate 4000 --source-ips 4

# The summary of the runs above, then the ratio tables of the side-by-side runs (the analysis
# that reads them, with repeated runs and their spread, is docs/perf/COMPARE.md, written by hand).
reports=()
for name in "${runs[@]}"; do
    [ -f "$out/$name.json" ] && reports+=("$out/$name.json")
done
if [ ${#reports[@]} -gt 0 ]; then
    "$lt" summarize "${reports[@]}" --svg-link latency.svg --out "$out/REPORT.md"
fi
# ONLY=compare keeps the summary and replaces the side-by-side section.
[ -f "$out/REPORT.md" ] && sed -i '/^## Side by side with the floor/,$d' "$out/REPORT.md"
{
    echo
    echo "## Side by side with the floor and naive reference servers"
    echo
    echo "Same $(nproc)-core machine (harness and servers share it), heavy clients (2 worker threads,"
    echo "one read per frame, a full \`serde_json\` parse of every frame), JSON, relay with default"
    echo "flags. Each section is one \`loadtest compare --rounds ${ROUNDS:-3}\` invocation: the same load"
    echo "against each server in turn, every other round in reverse order; first round 1's ratios"
    echo "per step, then each round's headline ratios (best passing deliveries/s; p99 and CPU per"
    echo "delivery at the highest step both held) with their median and range. Commands: the"
    echo "\`compare\` lines of \`loadtest/report.sh\`. More runs and the analysis:"
    echo "[COMPARE.md](COMPARE.md)."
    for name in compare-fanout compare-crowd; do
        [ -f "$out/$name.txt" ] || continue
        printf '\n### %s\n\n```text\n' "$name"
        # Round 1's per-step ratios (the first ratio table), then the rounds summary, if any.
        awk '/^== compare:/ { on = 1 } on { print } on && /clean$/ { exit }' "$out/$name.txt"
        sed -n '/^== compare over/,$p' "$out/$name.txt"
        echo '```'
    done
} >>"$out/REPORT.md"
echo "wrote $out/REPORT.md"
exit "$failed"
