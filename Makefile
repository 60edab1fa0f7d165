# loraland developer entry points. Every target installs what it needs by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CACHE ?= $(or $(LORALAND_CACHE),$(HOME)/.cache/loraland)
export LORALAND_CACHE := $(abspath $(CACHE))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PY := $(VENV)/bin/python
# uv installs the venv from uv.lock, frozen: nothing is resolved at install time. A machine
# without uv 0.13 (what pyproject's [tool.uv] asks for) gets the pinned release in a small
# venv of its own under the cache.
UV_VERSION := 0.13.9
UV ?= $(or $(shell uv --version 2>/dev/null | grep -q '^uv 0\.13\.' && command -v uv),$(LORALAND_CACHE)/tools/uv-$(UV_VERSION)/bin/uv)
export UV_PYTHON ?= $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | sha256sum | cut -c1-12)

# hack/cluster.mk adds the test control plane targets and appends to TEST_PREREQS;
# hack/images.mk adds `make images` and puts the background image build first.
TEST_PREREQS :=
-include hack/cluster.mk
-include hack/images.mk
.DEFAULT_GOAL := help

.PHONY: help venv lock-check demo test test-unit test-integration test-e2e lint typecheck crds \
        chart-crds operator-run cluster-bin cluster-up cluster-down clean-venv

venv: $(STAMP)

$(LORALAND_CACHE)/tools/uv-$(UV_VERSION)/bin/uv:
	$(PYTHON) -m venv $(LORALAND_CACHE)/tools/uv-$(UV_VERSION)
	$(LORALAND_CACHE)/tools/uv-$(UV_VERSION)/bin/pip install -q "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev
	rm -f $(VENV)/.installed-*
	touch $@

# Fails when pyproject.toml changed without `uv lock` (tests/unit/test_lock.py runs it too).
lock-check: | $(UV)
	$(UV) lock --check

demo: venv
	$(VENV)/bin/loraland demo --out demo-out

test: venv chromium $(TEST_PREREQS)
	LORALAND_REAL_NODE=1 $(PY) -m pytest tests --durations=30

test-unit: venv
	$(PY) -m pytest tests -m unit

test-e2e: venv chromium
	$(PY) -m pytest tests -m e2e

# The playground's browser tests (tests/e2e/playground) drive Debian's Chromium through
# Playwright; Playwright's own browser download is never used (its hosts are unreachable).
CHROMIUM := /usr/bin/chromium
chromium: $(CHROMIUM)

# The lock timeout: the background image build (hack/images.mk) may be installing too.
$(CHROMIUM):
	apt-get update -q -o DPkg::Lock::Timeout=600
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 chromium

test-playground: venv chromium
	$(PY) -m pytest tests -m browser

lint: venv
	$(VENV)/bin/ruff check operator tests benchmarks
	$(VENV)/bin/ruff format --check operator tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

# crds/ is generated from operator/loraland/api (a unit test fails when it is stale);
# the Helm chart carries a copy (tests/unit/chart fails when they differ).
crds: venv
	$(VENV)/bin/loraland crds generate --out crds
	$(MAKE) chart-crds

chart-crds:
	rm -f charts/loraland/crds/*.yaml
	cp crds/*.yaml charts/loraland/crds/

# The operator against the current kubeconfig (e.g. after `make cluster-up`).
operator-run: venv
	$(VENV)/bin/loraland operator run --all-namespaces

help:
	@echo 'make demo   run the LoRA Land loop on the embedded model'
	@echo 'make test   run every test this machine can run'

clean-venv:
	rm -rf $(VENV)
