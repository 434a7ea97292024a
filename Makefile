# One command each from a clean clone (README): `make train` sets up and trains, `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip options for torch only, e.g. on a CPU-only machine that reaches the PyTorch index:
#   make test TORCH_PIP_ARGS=--index-url=https://download.pytorch.org/whl/cpu
TORCH_PIP_ARGS ?=

.PHONY: setup train test lint clean

setup: $(VENV)/.installed

# Torch first, at the version pinned in constraints.txt: a bare `torch` resolved along with the
# rest would pull the multi-GB CUDA build onto machines that have no GPU.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

train: setup
	$(BIN)/python scripts/fit.py $(ARGS)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache .ruff_cache
