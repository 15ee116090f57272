# The README's two set-up commands: `make reproduce` (the main job) and `make test`.
# Each creates and fills the virtual environment .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: reproduce test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/zoobench reproduce --preset small --out results

# Lint first: a wrong-way import (docs/architecture.md) fails the tests before they run.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/zoo_throughput.py
	$(BIN)/python bench/gnn_throughput.py

clean:
	rm -rf $(VENV) zoos results .pytest_cache
