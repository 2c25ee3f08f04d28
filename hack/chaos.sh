#!/usr/bin/env bash
# Runs the chaos and restart tests at their documented size (docs/reliability.md):
# 300 nodes at concurrency 30, 10 SIGKILLs, leader kill, apiserver restart,
# NotReady nodes and deleted pods. Set NODEUPGRADE_CHAOS_SEED to replay the
# kill moments of an earlier run (each run logs its seed).
# `go test ./test/chaos/` alone runs the CI-sized versions.
set -euo pipefail
cd "$(dirname "$0")/.."
export NODEUPGRADE_CHAOS=full
# Every run is strict: any node dispatched twice or any instant above concurrency fails it.
exec go test -count=1 -p 1 -v -timeout 30m ./test/chaos/ "$@"
