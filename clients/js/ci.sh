#!/usr/bin/env bash
# Installs what the JavaScript and Python client tests need on a clean Debian machine that
# has Rust, Python 3.11+ with pip, Node 20 with npm and gcc, builds the relay binary, and runs
# them: the JS client under Node, the same module in headless Chromium (with the dashboard),
# and smoke tests of the two tail tools (examples/python/tail.py and the Rust client's tail
# example). Every step is bounded by `timeout`.
# .ci/run calls it: bash clients/js/ci.sh
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

echo "== client tests: dependencies"
if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # .ci/run updated the package lists already when it installed nats-server.
  if [ "${CI_APT_UPDATED:-0}" != 1 ]; then
    timeout 600 apt-get update -qq
  fi
  timeout 900 apt-get install -y -qq chromium >/dev/null
fi
if ! python3 -c 'import websockets' 2>/dev/null; then
  # A Debian-managed Python refuses plain pip installs; its override is the fallback.
  timeout 300 python3 -m pip install --quiet websockets \
    || timeout 300 python3 -m pip install --quiet --break-system-packages websockets
fi
timeout 300 npm ci --no-audit --no-fund

echo "== client tests: relay binary and the Rust tail example"
(cd "$root" && timeout 1800 cargo build --bin tickrelay && timeout 1800 cargo build --example tail)
export TEST_RELAY_BIN="$root/target/debug/tickrelay"
export TEST_TAIL_BIN="$root/target/debug/examples/tail"

echo "== client tests: JS (Node and headless Chromium), Python tail, Rust tail"
# The test files start and stop the relay themselves, on free loopback ports.
timeout 600 node --experimental-websocket --test tests/*.test.js
