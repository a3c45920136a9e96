#!/usr/bin/env bash
# The Python package's tests: `pip install ./bindings/python` (the README's command: a release
# wheel built by maturin) into a fresh venv with the test requirements, then its pytest suite,
# which compares the package with the `vlsm` binary `cargo test --workspace` built
# (target/debug/vlsm; VLSM_BIN overrides it).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVENV="$(mktemp -d)/venv"
python3 -m venv "$PYVENV"
"$PYVENV/bin/pip" install -q --upgrade pip
"$PYVENV/bin/pip" install -q -r bindings/python/tests/requirements.txt
# Without debug info (the release profile keeps line tables for the CLI): less disk, a quicker link.
time CARGO_PROFILE_RELEASE_DEBUG=0 "$PYVENV/bin/pip" install -q ./bindings/python
VLSM_BIN="${VLSM_BIN:-$PWD/target/debug/vlsm}" "$PYVENV/bin/python" -m pytest -q bindings/python/tests
