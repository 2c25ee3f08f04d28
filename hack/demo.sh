#!/usr/bin/env bash
# Runs the demo (test/demo): a local control plane with a simulated KubeEdge
# fleet, upgraded by the real controller. Builds the control-plane binaries
# first if bin/ lacks them. Arguments go to the demo, e.g. --exit-when-done.
# The demo is built and exec'd rather than `go run`: signals then reach it
# directly, so Ctrl-C or SIGTERM always stops the cluster in order.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s tools
go build -o bin/demo ./test/demo
exec bin/demo "$@"
