#!/usr/bin/env bash
# Installs the Debian packages the tests start for real when they are missing: nats-server
# (the scale-out tests, tests/nats_*.rs, and examples/scale-out.sh) and prometheus, for its
# promtool (tests/prometheus.rs checks /metrics with it), and curl (the README's quick start
# and examples/scale-out.sh, run by .ci/recipes.sh), libfaketime (tests/faults.rs steps
# the relay's wall clock with it) and haproxy (tests/ha_rolling.rs restarts edges behind
# it). Part of the README's test command,
# so a fresh machine runs those tests too; bounded, and quiet when all are there.
set -euo pipefail
missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v curl >/dev/null || missing+=(curl)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(libfaketime)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    # --no-install-recommends: promtool is all the tests use, not a running Prometheus.
    timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
nats-server --version
# sed reads to the end: `head` would close the pipe early and, under pipefail, a writer
# still printing would die of SIGPIPE and fail the stage (exit 141).
promtool --version 2>&1 | sed -n 1p
haproxy -v | sed -n 1p
