# posfleet: the two commands of the README.
#   make demo   set everything up, then run the demo (broker, central, dashboard, simulated fleet)
#   make test   set everything up, then run ruff, mypy and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: the demo needs the broker and Chart.js (the terminal page's charts); the tests also start a
# private PostgreSQL, VictoriaMetrics and a headless Chromium (with a CJK font, so the
# browser tests see Chinese merchant names as text, not boxes).
DEMO_PACKAGES := mosquitto libjs-chart.js
TEST_PACKAGES := mosquitto mosquitto-clients postgresql victoria-metrics chromium nginx fonts-noto-cjk libjs-chart.js
SYSTEM_PACKAGES = $(TEST_PACKAGES)
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest system-deps setup translations clean

demo: SYSTEM_PACKAGES = $(DEMO_PACKAGES)
demo: setup
	$(BIN)/posfleet demo $(DEMO_ARGS)

test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check posfleet tests bench
	$(BIN)/ruff format --check posfleet tests bench

typecheck: setup
	$(BIN)/mypy

# The suite runs on two workers (pytest-xdist): most of its time is spent waiting on
# the servers it starts, so two workers finish in well under the serial time on 2 cores.
PYTEST_WORKERS ?= 2

pytest: setup
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

# The terminal page's charts use Debian's Chart.js, copied into the package's static
# files (not kept in git); without it the page shows the same figures as tables.
CHART_JS := /usr/share/javascript/chart.js/chart.min.js
VENDORED_CHART_JS := posfleet/dashboard/static/vendor/chart.min.js

setup: system-deps $(STAMP) $(VENDORED_CHART_JS) translations

# The gettext catalogues (posfleet/locale/*/LC_MESSAGES/*.po) compiled to .mo (not kept in git).
translations: $(STAMP)
	$(BIN)/python -m posfleet.i18n.catalogues compile

$(VENDORED_CHART_JS): $(CHART_JS)
	mkdir -p $(dir $@)
	cp $< $@

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

# make fuzz: every atheris harness of fuzz/ (see fuzz/README.md) for FUZZ_RUNS inputs each,
# one after the other; a crash stops it, its input in fuzz/out/<harness>-crash-*.
FUZZ_RUNS ?= 1000000
FUZZ_HARNESSES ?= frames tlv_apdu zvt payloads rule_files
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[fuzz]'
	@for h in $(FUZZ_HARNESSES); do \
	  mkdir -p fuzz/out/$$h; start=$$SECONDS; \
	  dict=""; [ -f fuzz/dicts/$$h.dict ] && dict="-dict=fuzz/dicts/$$h.dict"; \
	  echo "fuzz: $$h, $(FUZZ_RUNS) inputs"; \
	  $(BIN)/python -m fuzz.run $$h -runs=$(FUZZ_RUNS) $$dict -print_final_stats=1 \
	    -artifact_prefix=fuzz/out/$$h- fuzz/out/$$h fuzz/corpus/$$h || exit 1; \
	  echo "fuzz: $$h done, $(FUZZ_RUNS) inputs in $$((SECONDS - start)) s"; \
	done
