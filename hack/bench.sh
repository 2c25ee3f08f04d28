#!/usr/bin/env bash
# Runs the rollout benchmark (docs/benchmarks.md). Arguments go to
# test/bench/cmd/bench, e.g. `hack/bench.sh -quick` or
# `hack/bench.sh -nodes 10000 -concurrency 500 -repeats 1`.
# The controller and the control plane must not share the 2 cores with other
# test runs, or the numbers measure the noise: run it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./test/bench/cmd/bench "$@"
