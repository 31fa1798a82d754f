#!/usr/bin/env bash
# Kept for older instructions: .ci/packages.sh installs nats-server and promtool.
exec bash "$(dirname "$0")/packages.sh"
