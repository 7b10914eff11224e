# The two commands: `make demo` (set up, then train the quickstart) and `make test` (set up, then run every test).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast lint docs bench bench-vllm

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/reasonrl train recipes/quickstart.yaml --overwrite

test: setup lint docs
	$(PY) -m pytest -m "not gpu" -q
	bash scripts/setup_vllm.sh
	.venv-vllm/bin/python -m pytest -m "vllm and not gpu" -q tests/unit/test_vllm_engine.py

test-fast: setup
	$(PY) -m pytest -q

lint: setup   # ruff lint and format check (pyproject.toml [tool.ruff]) and mypy on the package
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy reasonrl

docs: setup   # the docs site from docs/ into site/; strict: a broken link or a missing page fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q

bench: setup   # reasonrl vs TRL's GRPOTrainer on the same GRPO work (see bench/grpo_bench.py)
	bash bench/setup.sh
	bench/.venv/bin/python bench/grpo_bench.py --rounds 2

bench-vllm: setup   # the same with reasonrl's engine.name=vllm (.venv-vllm), and TRL's own vLLM mode where it runs
	bash bench/setup.sh
	bash scripts/setup_vllm.sh
	.venv-vllm/bin/python -m pip install -q --disable-pip-version-check "trl==1.16.0" "transformers<5.20"
	bench/.venv/bin/python bench/grpo_bench.py --engine vllm --which reasonrl,trl,trl-vllm --rounds 2
