# machine-secrets: every target creates what it needs first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv proto run test lint clean

all: test

# The virtual environment, with the project installed in editable mode and its pinned dependencies.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

# Regenerates generated/ from proto/: Python messages, .pyi stubs, gRPC stubs, and the descriptor
# set (with every import) that Envoy's gRPC-JSON transcoder reads. generated/ is committed.
proto: $(STAMP)
	$(BIN)/python -m tools.genproto generated

run: $(STAMP)
	$(BIN)/python -m server

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check server tests tools
	$(BIN)/ruff format --check server tests tools
	$(BIN)/mypy server tests tools

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
