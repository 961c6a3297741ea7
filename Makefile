# machine-secrets: every target creates what it needs first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv build-deps system-deps bench-deps proto openapi console docs docs-config docs-serve run test bench lint clean

all: test

# The virtual environment, with the project installed in editable mode and its pinned dependencies.
$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory build-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# What pip needs to build PyICU (ICU's confusable skeletons for user names; PyPI has no wheel of
# it): ICU's headers, pkg-config and a C++ compiler, from Debian when missing (as root).
build-deps:
	@missing=""; \
	pkg-config --exists icu-uc 2>/dev/null || missing="$$missing libicu-dev"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "not root: install$$missing yourself (PyICU is built from source)"; exit 1; \
	  fi; \
	fi

venv: $(STAMP)

# ZITADEL's official Python SDK, which tests/test_zitadel_clients.py drives unmodified, in an
# environment of its own: it needs urllib3 2 (its metadata says 1.25 would do; its code imports
# urllib3 2's BaseHTTPResponse), and sonora pins urllib3 below 2 in the project's.
SDK_VENV := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
$(SDK_STAMP):
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --quiet 'zitadel-client==4.1.9' 'urllib3>=2,<3'
	touch $@

# What the tests need from Debian, and nothing they do not: Chromium (the browser test; its
# recommended packages, which bring in systemd, avahi and cups pieces, are left out, and
# fonts-liberation gives the page's text a font), Node.js with npm to build the page and to run
# ZITADEL's Node client, and curl (the runbook in SECURITY.md is run as written).
# Installed with apt-get when missing (as root); without root the browser test says it skipped.
system-deps:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium fonts-liberation"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "not root: install$$missing yourself for the browser test"; \
	  fi; \
	fi

# Regenerates generated/ from proto/: Python messages, .pyi stubs, gRPC stubs, and the descriptor
# set (with every import) that Envoy's gRPC-JSON transcoder reads. generated/ is committed. Then
# what is made from the descriptor set: the OpenAPI document and the API reference's table (docs/api.md).
proto: $(STAMP)
	$(BIN)/python -m devtools.genproto generated
	$(BIN)/python -m devtools.genopenapi
	$(BIN)/python -m devtools.apitable

# The OpenAPI document of the JSON API, from the descriptor set (make proto runs it too).
openapi: $(STAMP)
	$(BIN)/python -m devtools.genopenapi

# The web console: server/console/ (committed, so that `make run` needs no npm) built from console/
# with connect-es, the toolchain of examples/browser; tests/test_console.py checks they are in step.
console: system-deps
	cd console && npm ci --no-audit --no-fund && npm run build

# The documentation site (mkdocs.yml, docs/), with MkDocs and Material, into build/site/. Strict: a
# broken link, a missing anchor or a page left out of the navigation fails (tests/test_docs.py
# builds it too, so `make test` does). docs-config rewrites the configuration page's table from
# server/config.py; docs-serve serves the site on loopback, rebuilt as pages change.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/python -m mkdocs build --strict

docs-config: $(STAMP)
	$(BIN)/python -m devtools.configtable

docs-serve: $(STAMP)
	$(DOCS_ENV) $(BIN)/python -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

run: $(STAMP)
	$(BIN)/python -m server

# The suite on TEST_WORKERS pytest-xdist workers (each file on one worker, with its own service),
# then the tests marked serial alone: they disturb what the others share. A phase that collects
# no test fails (pytest's exit code 5), unless PYTEST_ARGS chose a part of the suite that has
# none of that phase's tests.
TEST_WORKERS ?= 2
NONE_CHOSEN_OK = { rc=$$?; [ -n "$(PYTEST_ARGS)" ] && [ $$rc -eq 5 ]; }
test: $(STAMP) $(SDK_STAMP) system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) || $(NONE_CHOSEN_OK)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS) || $(NONE_CHOSEN_OK)

# The load tool: h2load, from Debian's nghttp2-client.
bench-deps:
	@command -v h2load >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nghttp2-client; }

# Benchmarks, written to BENCHMARKS.md. BENCH_ARGS=--postgres for PostgreSQL; see python -m devtools.bench -h.
bench: $(STAMP) bench-deps
	$(BIN)/python -m devtools.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check server tests devtools
	$(BIN)/ruff format --check server tests devtools
	$(BIN)/mypy server tests devtools

clean:
	rm -rf $(VENV) $(SDK_VENV) .data .pytest_cache .mypy_cache .ruff_cache
