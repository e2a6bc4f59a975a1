#!/usr/bin/env bash
# Create .venv-bfx: a separate virtualenv holding the official Bitfinex Python client (bitfinex-api-py, package
# bfxapi), which pins websockets~=12.0 and so cannot share the project's .venv (websockets 17).
# tests/test_official_client.py runs tools/bfx_official_client.py with this venv's python against our exchange.
#
# Idempotent: a stamp file records what was installed; a second run with the same version does nothing.
# Environment: PY (interpreter, default python3.11), BFX_VENV (default .venv-bfx), BFXAPI_VERSION (default 4.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-python3.11}"
VENV="${BFX_VENV:-.venv-bfx}"
VERSION="${BFXAPI_VERSION:-4.0.0}"
STAMP="$VENV/.bfxapi-$VERSION"

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; then
    echo "compat_venv: $VENV already has bitfinex-api-py==$VERSION ($STAMP); nothing to do"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    if ! command -v "$PY" >/dev/null; then
        echo "compat_venv: $PY not found, using python3 ($(python3 --version 2>&1))"
        PY=python3
    fi
    echo "compat_venv: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
echo "compat_venv: installing bitfinex-api-py==$VERSION into $VENV"
"$VENV/bin/python" -m pip install -q "bitfinex-api-py==$VERSION"
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import bfxapi  # noqa: F401  (the import itself is the check)

print("compat_venv: installed " + ", ".join(f"{p} {version(p)}" for p in ("bitfinex-api-py", "websockets", "pyee")))
EOF
rm -f "$VENV"/.bfxapi-*
touch "$STAMP"
echo "compat_venv: done in $(( $(date +%s) - start )) s (stamp $STAMP)"
