#!/usr/bin/env bash
# Makes a fresh venv at DIR with the Python package's test requirements and the package, for the
# pytest run of the README's test command.
#
#   venv.sh DIR          `pip install ./bindings/python` (the README's install command: a release
#                        wheel built by maturin, every dependency compiled again at opt-level 3)
#   venv.sh DIR --debug  after `cargo test --workspace`: the module linked by cargo from that run's
#                        debug artifacts (the workspace's feature set, so only pyo3 and the module
#                        recompile), packed as a wheel by debug_wheel.py and pip-installed. The
#                        README's test command uses it; the numbers are the same (the tests compare
#                        with target/debug/vlsm byte for byte either way).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:?usage: bindings/python/venv.sh DIR [--debug]}"
MODE="${2:-}"
case "$MODE" in "" | --debug) ;; *) echo "usage: bindings/python/venv.sh DIR [--debug]" >&2; exit 2 ;; esac
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r bindings/python/tests/requirements.txt
# Only the client of MONAI Label and the brush converter of label-studio-sdk (tests/test_protocols.py),
# without their dependency trees (see requirements.txt).
"$VENV/bin/pip" install -q --no-deps monailabel==0.8.5 label-studio-sdk==2.1.2
if [ "$MODE" = --debug ]; then
  # `--workspace`: a `-p vlsm-python` build (what maturin runs) unifies features over that one
  # package, which changes serde's and syn's, and would rebuild most dependencies.
  # PYO3_BUILD_EXTENSION_MODULE: pyo3's `extension-module` without changing its feature set.
  time PYO3_BUILD_EXTENSION_MODULE=1 cargo build --workspace --lib
  WHEELS="$(mktemp -d)"
  trap 'rm -rf "$WHEELS"' EXIT
  "$VENV/bin/pip" install -q "$("$VENV/bin/python" bindings/python/debug_wheel.py "${CARGO_TARGET_DIR:-target}/debug/lib_vlsm.so" "$WHEELS")"
else
  # Without debug info (the release profile keeps line tables for the CLI): less disk, a quicker link.
  time CARGO_PROFILE_RELEASE_DEBUG=0 "$VENV/bin/pip" install -q ./bindings/python
fi
