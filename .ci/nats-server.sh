#!/usr/bin/env bash
# Installs Debian's nats-server when it is missing: the scale-out tests (tests/nats_scale.rs)
# start a real one and, under CI=true, fail without it. Part of the README's test command, so a
# fresh machine runs them too; bounded, and quiet when nats-server is already there.
set -euo pipefail
if command -v nats-server >/dev/null; then
    nats-server --version
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
timeout 300 apt-get update -qq
timeout 300 apt-get install -y -qq nats-server >/dev/null
nats-server --version
