# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint deps system-deps bench dashboards

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

# Debian packages for the integration tests (Node for the @orchestr8 forwarder's, Chromium for
# the pages rendered headless); installed only when we are root and they are missing.
system-deps:
	@if [ "$$(id -u)" = "0" ] && ! (command -v prometheus && command -v prometheus-alertmanager \
	    && command -v promtool && command -v amtool && command -v node && command -v chromium \
	    && ls /usr/lib/postgresql/*/bin/initdb) >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager postgresql nodejs chromium; \
	fi

run: $(STAMP)
	$(BIN)/orchestrator-exporter serve --demo

test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

dashboards: $(STAMP)
	$(BIN)/python -m grafana.generate

bench: $(STAMP)
	$(BIN)/python -m bench
