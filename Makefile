# posfleet: the two commands of the README.
#   make demo   set everything up, then run the demo (broker, central, dashboard, simulated fleet)
#   make test   set everything up, then run ruff, mypy and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages started for real: the demo needs the broker; the tests also start a
# private PostgreSQL, VictoriaMetrics and a headless Chromium.
DEMO_PACKAGES := mosquitto
TEST_PACKAGES := mosquitto mosquitto-clients postgresql victoria-metrics chromium
SYSTEM_PACKAGES = $(TEST_PACKAGES)
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest system-deps setup clean

demo: SYSTEM_PACKAGES = $(DEMO_PACKAGES)
demo: setup
	$(BIN)/posfleet demo $(DEMO_ARGS)

test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check posfleet tests bench
	$(BIN)/ruff format --check posfleet tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest -q

setup: system-deps $(STAMP)

# Debian packages, installed only when missing (python3-venv too, if this Python lacks venv).
system-deps:
	@missing=""; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing=" python3-venv"; \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
