#!/usr/bin/env bash
# Makes a fresh venv at $1 with the Python package's test requirements and
# `pip install ./bindings/python` (the README's command: a release wheel built by maturin), for
# the pytest run of the README's test command.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:?usage: bindings/python/venv.sh DIR}"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r bindings/python/tests/requirements.txt
# Only the client of MONAI Label and the brush converter of label-studio-sdk (tests/test_protocols.py),
# without their dependency trees (see requirements.txt).
"$VENV/bin/pip" install -q --no-deps monailabel==0.8.5 label-studio-sdk==2.1.2
# Without debug info (the release profile keeps line tables for the CLI): less disk, a quicker link.
time CARGO_PROFILE_RELEASE_DEBUG=0 "$VENV/bin/pip" install -q ./bindings/python
