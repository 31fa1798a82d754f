#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzing client (the official `wstest`, CPython 2.7) against
# `tickrelay --conformance-echo --ws-deflate on` on a free loopback port, and fails if any
# case is FAILED or UNIMPLEMENTED, or its closing handshake FAILED.
#
#   bash tests/fuzz/autobahn.sh                 # the CI subset (below), debug relay
#   AUTOBAHN_CASES='"12.*","13.*"' bash tests/fuzz/autobahn.sh   # any case list
#   AUTOBAHN_CASES='"*"' AUTOBAHN_TIMEOUT=7200 AUTOBAHN_RELAY=target/release/tickrelay \
#       bash tests/fuzz/autobahn.sh             # every case (tests/fuzz/AUTOBAHN.md)
#
# Needs CPython 2.7 (AUTOBAHN_PYTHON, default pyenv's 2.7.18); builds the 2.7 virtualenv
# (target/autobahn-venv) from tests/fuzz/autobahn-py27-requirements.txt on first use.
# AUTOBAHN_RELAY picks the relay binary (default: the debug build, built if missing).
# Reports go to target/autobahn-reports/ (index.json and HTML; not committed).
set -euo pipefail
cd "$(dirname "$0")/../.."

py27=${AUTOBAHN_PYTHON:-$HOME/.pyenv/versions/2.7.18/bin/python}
venv=${AUTOBAHN_VENV:-target/autobahn-venv}
# The CI subset: every parameter set of 13 (the negotiation) and every payload of 12, at
# the sizes up to 4 KiB (x.y.1-5) and one 8 KiB case auto-fragmented to 256-byte frames
# (x.y.11), so fragmented compressed messages are covered. The whole of 12 and 13 (216
# cases) takes ~25 minutes here, so it is a manual run (tests/fuzz/AUTOBAHN.md).
default_cases=$(python3 -c '
cases = ["%d.%d.%d" % (g, s, c) for g, subs in ((12, 5), (13, 7))
         for s in range(1, subs + 1) for c in (1, 2, 3, 4, 5, 11)]
print(",".join("\"%s\"" % c for c in cases))')
cases=${AUTOBAHN_CASES:-$default_cases}

if [ ! -x "$venv/bin/wstest" ]; then
    # A Debian-managed Python refuses plain pip installs; its override is the fallback.
    timeout 300 python3 -m pip install --quiet virtualenv==20.21.1 \
        || timeout 300 python3 -m pip install --quiet --break-system-packages virtualenv==20.21.1
    timeout 120 python3 -m virtualenv --quiet -p "$py27" "$venv"
    timeout 600 "$venv/bin/pip" install --quiet -r tests/fuzz/autobahn-py27-requirements.txt
fi

relay=${AUTOBAHN_RELAY:-target/debug/tickrelay}
if [ -z "${AUTOBAHN_RELAY:-}" ]; then
    timeout 900 cargo build --quiet --bin tickrelay
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
work=target/autobahn-reports
rm -rf "$work" && mkdir -p "$work"
"$relay" --conformance-echo --ws-deflate on --listen "127.0.0.1:$port" \
    --ingest-tcp "127.0.0.1:$(free_port)" --ingest-tcp-protobuf "127.0.0.1:$(free_port)" \
    --max-message-bytes 20000000 --log warn >"$work/relay.log" 2>&1 &
relay_pid=$!
trap 'kill "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 30
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=1)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("relay did not answer /health within 30 s")
        time.sleep(0.1)
PY

cat >"$work/spec.json" <<JSON
{
  "outdir": "./servers",
  "servers": [{ "agent": "tickrelay", "url": "ws://127.0.0.1:$port/echo" }],
  "cases": [$cases],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
wstest=$(cd "$venv/bin" && pwd)/wstest
(cd "$work" && timeout "${AUTOBAHN_TIMEOUT:-900}" "$wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) \
    || { tail -n 20 "$work/wstest.log"; exit 1; }

python3 - "$work/servers/index.json" <<'PY'
import collections, json, sys
results = json.load(open(sys.argv[1]))["tickrelay"]
def key(case):
    return tuple(int(p) for p in case.split("."))
counts = collections.Counter()
bad = []
for case in sorted(results, key=key):
    r = results[case]
    verdict = r["behavior"]
    counts[verdict] += 1
    if verdict in ("FAILED", "UNIMPLEMENTED") or r["behaviorClose"] == "FAILED":
        bad.append("%s %s / close %s" % (case, verdict, r["behaviorClose"]))
print("autobahn: %d cases: %s" % (len(results), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
for line in bad:
    print("autobahn: not passed: " + line)
sys.exit(1 if bad else 0)
PY
