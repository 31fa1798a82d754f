#!/usr/bin/env bash
# Runs the README's quick start as a newcomer would, then examples/scale-out.sh --check, and
# fails unless each delivers what the docs promise. The quick start's command lines are read
# from README.md itself (so an edit there is what is tested), in the debug build unless
# RECIPES_RELEASE=1 (`--release` dropped: CI has built debug already, a release build would
# cost ~7 minutes more). Every wait is bounded; every process started here is stopped.
# .ci/run calls it: bash .ci/recipes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# readme PREFIX: the README's command line that starts with PREFIX (after indentation),
# with any trailing `  # comment` removed; fails when the README has no such line.
readme() {
    local line
    line=$(sed -n "s/^ *\\(${1//\//\\/}.*\\)\$/\\1/p" README.md | head -n 1)
    if [ -z "$line" ]; then
        echo "README.md has no command line starting with: $1" >&2
        exit 1
    fi
    line=${line%%  #*}
    if [ "${RECIPES_RELEASE:-0}" != 1 ]; then
        line=${line//--release /}
    fi
    printf '%s\n' "$line"
}

# until SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it succeeds, or fails
# naming WHAT after SECONDS.
until_ok() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "!! recipes: no $what within ${limit}s" >&2
            for f in "$work"/*; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
            exit 1
        fi
        sleep 0.2
    done
}

for port in 8080 7001 7002; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "!! recipes: port $port is taken (a relay still running?); the quick start needs it" >&2
        exit 1
    fi
done

echo "== quick start"
relay=$(readme 'cargo run --release -- --demo')
tail=$(readme 'cargo run --release --example tail -- MY-COIN')
publish=$(readme "curl -s -d '{\"symbol\":\"MY-COIN\"")
ingest=$(readme "echo '{\"symbol\":\"MY-COIN\"")
printf '  terminal 1: %s\n  terminal 2: %s\n  terminal 3: %s\n  step 4:     %s\n' \
    "$relay" "$tail" "$publish" "$ingest"

bash -c "$relay" >"$work/terminal-1.out" 2>"$work/terminal-1.err" &
pids+=($!)
until_ok 600 "ready relay (terminal 1)" curl -sf http://127.0.0.1:8080/ready
bash -c "$tail" >"$work/terminal-2.out" 2>"$work/terminal-2.err" &
pids+=($!)
# The tail says on stderr when it is connected; then a publish arrives live.
until_ok 600 "connected tail (terminal 2)" grep -q connected "$work/terminal-2.err"
answer=$(bash -c "$publish")
echo "  terminal 3 printed: $answer"
[ "$answer" = '{"accepted":1}' ] || { echo "!! recipes: the publish answered $answer" >&2; exit 1; }
until_ok 30 "MY-COIN seq 1 in terminal 2" grep -q '"type":"tick","symbol":"MY-COIN","seq":1,' "$work/terminal-2.out"
bash -c "$ingest"
until_ok 30 "MY-COIN seq 2 in terminal 2" grep -q '"type":"tick","symbol":"MY-COIN","seq":2,' "$work/terminal-2.out"
sed 's/^/  terminal 2 printed: /' "$work/terminal-2.out"
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

echo "== scale-out (examples/scale-out.sh --check)"
if [ "${RECIPES_RELEASE:-0}" = 1 ]; then
    bash examples/scale-out.sh --check
else
    cargo build --bin tickrelay --example tail
    RELAY_BIN=target/debug/tickrelay TAIL_BIN=target/debug/examples/tail bash examples/scale-out.sh --check
fi
echo "recipes: 2 passed, 0 failed"
