# One command each from a clean clone (README): `make train` sets up and trains, `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip options for torch only, e.g. on a CPU-only machine that reaches the PyTorch index:
#   make test TORCH_PIP_ARGS=--index-url=https://download.pytorch.org/whl/cpu
TORCH_PIP_ARGS ?=

.PHONY: setup train test lint docs gpu-check clean

setup: $(VENV)/.installed

# Torch first, at the version pinned in constraints.txt: a bare `torch` resolved along with the
# rest would pull the multi-GB CUDA build onto machines that have no GPU. Without an NVIDIA GPU,
# scripts/install_torch.sh takes the PyTorch CPU index if it answers in 5 s, else the registry's build, and says which.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	TORCH_PIP_ARGS='$(TORCH_PIP_ARGS)' bash scripts/install_torch.sh $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,docs]'
	touch $@

train: setup
	$(BIN)/python scripts/fit.py $(ARGS)

lint: setup
	$(BIN)/ruff check .

# Two pytest-xdist workers (one torch thread each, tests/conftest.py): on CI's 2 cores 193 s against 341 s serial,
# measured on one quiet VM and one commit. PYTEST_ARGS= runs serially.
PYTEST_ARGS ?= -n 2

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (docs/, mkdocs.yml) into site/: --strict fails on any warning, as CI does.
docs: setup
	$(BIN)/python -m mkdocs build --strict

# On a machine with one CUDA GPU: the GPU checks in one go, a Markdown report under gpu-report/ (see --help).
gpu-check: setup
	PATH=$(BIN):$$PATH bash scripts/gpu_check.sh --out gpu-report

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache .ruff_cache site
