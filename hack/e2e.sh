#!/usr/bin/env bash
# Runs the local-cluster tests: the localcluster library, the kubectl
# end-to-end suite and the demo's own test, one package at a time (each
# starts a control plane; the machine may have only 2 cores). Extra
# arguments go to go test, e.g. -run or -ginkgo.focus=Leader.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s tools
exec go test -count=1 -p 1 -timeout 15m ./test/localcluster/... ./test/e2e/... ./test/demo/... "$@"
