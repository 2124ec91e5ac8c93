# Two entry points for a fresh machine:
#   make build  - set up, then compile the bundled costplan.yaml for every environment into out/
#   make test   - set up (incl. promtool), lint, then run the whole test suite
# For contributors:
#   make test-fast - everything but the Prometheus-backed and slow suites (under a minute)
#   make lint      - ruff and mypy
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
COSTPLAN := $(VENV)/bin/costplan

# CRD schemas for custom resources, kubeconform layout. Uses the reference
# copy beside the project when it exists; override with your own location.
SHARED_CRD_SCHEMAS := $(abspath ../shared/crd-schemas)
ifneq ($(wildcard $(SHARED_CRD_SCHEMAS)),)
COSTPLAN_SCHEMA_LOCATION ?= $(SHARED_CRD_SCHEMAS)/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json
export COSTPLAN_SCHEMA_LOCATION
endif

.PHONY: build test test-fast lint setup tools bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# promtool and the Prometheus server (Debian's package) for rule tests; amtool and
# Alertmanager (Debian's prometheus-alertmanager) for the alert routing tests; VictoriaMetrics
# and vmalert (Debian's victoria-metrics) for the global-view report and engine tests.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package (promtool)" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v amtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus-alertmanager package (amtool, alertmanager)" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null; }
	@command -v victoria-metrics >/dev/null 2>&1 && command -v vmalert >/dev/null 2>&1 || { \
	  echo "installing Debian's victoria-metrics package (victoria-metrics, vmalert)" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null; }

build: setup
	$(COSTPLAN) build --all-envs -o out

lint: setup
	$(VENV)/bin/ruff check costplan tests benchmarks
	$(VENV)/bin/mypy

test: setup tools lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not prometheus and not slow"

bench: setup tools
	$(PY) benchmarks/build_bench.py
	$(PY) benchmarks/guard_bench.py

clean:
	rm -rf $(VENV) out .pytest_cache
