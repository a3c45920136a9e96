#!/usr/bin/env bash
# Load test of `vlsm serve` on loopback (see docs/serve.md). Arguments go to the tool, e.g.
#   tools/loadtest/run.sh --clients 50 --requests 1000 --model path/to/model
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --release -p vlsm-serve --example loadtest -- "$@"
