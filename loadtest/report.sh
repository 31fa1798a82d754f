#!/usr/bin/env bash
# Builds tickrelay and the load-test harness (release), runs a bounded set of load tests against
# a relay the harness spawns on free loopback ports, then the side-by-side runs against the
# reference servers, and writes the report people read:
#
#   docs/perf/REPORT.md     the summary, generated (never edited by hand); the compare tables end it
#   docs/perf/latency.svg   the ramp's latency percentiles against rate
#   docs/perf/data/*.json   this run's single-mode reports, the ones REPORT.md links
#
# Everything else a run produces is raw output and goes to $RAW (default target/perf/, which git
# ignores): every compare round's JSON report, the printed tables (NAME.txt) and the servers'
# logs (logs/). Raw rounds never go into the tree.
#
# Every run is bounded (--max-time) and talks to 127.0.0.x only. The machines cap open files at
# 20,000 per process, so the crowd run stays at 19,000 clients: the harness holds one socket
# per client, the relay one per connection plus listeners and ingest.
#
#   loadtest/report.sh                # all runs, about 6 minutes on 2 cores, then the comparisons
#   ONLY=compare loadtest/report.sh   # only the side-by-side runs, then REPORT.md again
#   ONLY=report loadtest/report.sh    # only REPORT.md again, from docs/perf/data and $RAW
#   ROUNDS=5 loadtest/report.sh       # side-by-side rounds (default 3; 1 = a single pair)
#   DOCS=/tmp/perf RAW=/tmp/perf-raw loadtest/report.sh   # somewhere else
#   CARGO_TARGET_DIR=/work/target-lt loadtest/report.sh   # raw output under it too
set -euo pipefail

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
docs="${DOCS:-docs/perf}"
raw="${RAW:-$target/perf}"
rounds="${ROUNDS:-3}"
lt="$target/release/loadtest"
relay="$target/release/tickrelay"
mkdir -p "$docs/data" "$raw/logs"

common=(--spawn "$relay" --max-time 5m)
[ -t 2 ] || common+=(--no-progress)
failed=0

# run NAME MODE ARGS...: one bounded harness run writing $raw/NAME.json.
run() {
    local name=$1 mode=$2
    shift 2
    echo "== $name: loadtest $mode $*"
    if ! timeout 420 "$lt" "$mode" "${common[@]}" --label "$name" \
        --relay-log "$raw/logs/tickrelay-$name.log" --report-json "$raw/$name.json" "$@"; then
        echo "!! $name failed (exit $?)"
        failed=1
    fi
}

# compare NAME ARGS...: the same load against floor, naive, nats-server and the relay in one
# invocation (heavy clients, JSON); writes $raw/NAME-rN-{floor,naive,nats,relay,relay-batched}.json and
# $raw/NAME.txt, whose tables are relay ÷ each other server, per step, then over the rounds,
# then the relay's targets.
compare() {
    local name=$1
    shift
    echo "== $name: loadtest compare $*"
    if ! timeout 1200 "$lt" compare "${common[@]}" --label "$name" \
        --relay-log "$raw/logs/tickrelay-$name.log" --report-json "$raw/$name.json" "$@" \
        | tee "$raw/$name.txt"; then
        echo "!! $name failed (exit $?)"
        failed=1
    fi
}

# The summary of the single-mode runs (docs/perf/data), then the side-by-side tables ($raw).
write_report() {
    local reports=()
    for name in "${runs[@]}"; do
        [ -f "$docs/data/$name.json" ] && reports+=("$docs/data/$name.json")
    done
    if [ ${#reports[@]} -gt 0 ]; then
        "$lt" summarize "${reports[@]}" --svg-link latency.svg --out "$docs/REPORT.md"
    fi
    [ -f "$docs/REPORT.md" ] || : >"$docs/REPORT.md"
    # Keep the summary, replace the side-by-side section.
    sed -i '/^## Side by side with /,$d' "$docs/REPORT.md"
    {
        echo
        echo "## Side by side with the reference servers and nats-server"
        echo
        echo "Same $(nproc)-core machine (harness and servers share it), heavy clients (2 worker threads,"
        echo "one read per frame, a full \`serde_json\` parse of every frame), JSON, relay with default"
        echo "flags. Each section is one \`loadtest compare --rounds $rounds\` invocation: the same load"
        echo "against each server in turn, every other round in reverse order; first round 1's ratios"
        echo "per step, then each round's headline ratios (best passing deliveries/s; p99 and CPU per"
        echo "delivery at the highest step both held) with their median and range, and the relay's"
        echo "targets where they apply. Commands: the \`compare\` lines of \`loadtest/report.sh\`."
        echo "More runs and the analysis: [COMPARE.md](COMPARE.md)."
        for name in "${compares[@]}"; do
            [ -f "$raw/$name.txt" ] || continue
            printf '\n### %s\n\n```text\n' "$name"
            # Round 1's per-step ratios (the first ratio table), then the rounds summary, if any.
            awk '/^== compare:/ { on = 1 } on { print } on && /clean$/ { exit }' "$raw/$name.txt"
            sed -n '/^== compare over/,$p' "$raw/$name.txt"
            [ "$rounds" -gt 1 ] || sed -n '/^== targets/,$p' "$raw/$name.txt"
            echo '```'
        done
    } >>"$docs/REPORT.md"
    echo "wrote $docs/REPORT.md"
}

runs=(steady-1000x10 steady-5000x5 crowd-19000 crowd-burst slow-10pct ramp)
compares=(compare-fanout compare-crowd)

if [ "${ONLY:-}" = report ]; then
    cargo build --release -p loadtest --bin loadtest
    write_report
    exit 0
fi

cargo build --release --bin tickrelay
cargo build --release -p loadtest --bin loadtest

if [ "${ONLY:-}" != compare ]; then
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
        --rate 1000 --step-duration 5s --max-steps 8 --p99-bound-ms 10 --svg "$docs/latency.svg"
    # This run's reports replace the last one's in the tree (the ones REPORT.md links).
    rm -f "$docs"/data/*.json
    for name in "${runs[@]}"; do
        [ -f "$raw/$name.json" ] && cp "$raw/$name.json" "$docs/data/"
    done
fi

# The side-by-side runs (nats-server must be installed: apt-get install nats-server): a fan-out
# ramp in √2 steps (a step holds with no loss and p99 < 50 ms) and a crowd at 1,000 ticks/s.
# Four servers in a row open four times the connections within a minute: --source-ips
# spreads them past ports still in TIME_WAIT. --rounds repeats each set,
# every other round in reverse order, and ends with the median and range of each ratio: one
# pair moves with the host too much to carry a claim alone.
servers=(--servers floor,naive,nats,relay,relay-batched)
compare compare-fanout "${servers[@]}" --rounds "$rounds" --shape ramp --clients 1000 --symbols 100 \
    --symbols-per-client 10 --mix json=1 --rate 1000 --step-factor 1.4142 --step-duration 5s \
    --max-steps 12 --p99-bound-ms 50 --source-ips 2
compare compare-crowd "${servers[@]}" --rounds "$rounds" --shape crowd --clients 5000 --symbols 100 \
    --symbols-per-client 5 --mix json=1 --rate 1000 --duration 10s --connect-rate 4000 \
    --source-ips 4

write_report
exit "$failed"
