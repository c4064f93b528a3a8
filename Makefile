# ztmint build, test and demo entry points. Every target installs what it needs first, so
# `make demo` and `make test` work on a fresh clone with only Python 3.11, Go and Node present.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/.bin
PY := $(VENV)/bin/python
OPA_VERSION := v1.22.4
HELM_VERSION := v4.3.2
STATE ?= $(CURDIR)/.state
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)
export GOBIN := $(BIN)
export PYTHONPATH := $(CURDIR)
# Keep Ray on loopback: a local Ray otherwise binds to the host's routable address.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0

# Debian packages the tests start for real: SoftHSM2 (PKCS#11 receipts), PostgreSQL (shared
# state for several mint replicas) and Chromium (the browser flow).
APT_PACKAGES := softhsm2 postgresql chromium

.PHONY: setup tools system-packages demo test test-python test-opa up bench lint clean

# What the demo needs: the virtualenv and OPA.
setup: $(VENV)/.installed $(BIN)/opa

# What the test suite needs on top: the Envoy and deployment checkers and Helm.
tools: $(BIN)/envoy-check $(BIN)/helm $(BIN)/deploy-check

system-packages:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(BIN)/opa:
	mkdir -p $(BIN)
	go install github.com/open-policy-agent/opa@$(OPA_VERSION)

$(BIN)/envoy-check: $(wildcard envoy/check/*.go) envoy/check/go.mod
	mkdir -p $(BIN)
	cd envoy/check && go build -o $(BIN)/envoy-check .

$(BIN)/helm:
	mkdir -p $(BIN)
	go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

$(BIN)/deploy-check: $(wildcard deploy/check/*.go) deploy/check/go.mod
	mkdir -p $(BIN)
	cd deploy/check && go build -o $(BIN)/deploy-check .

demo: setup
	$(VENV)/bin/ztmint demo --state $(STATE)/demo

up: setup
	$(VENV)/bin/ztmint up --state $(STATE)/stack

test: system-packages setup tools test-opa test-python

test-python:
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-opa: $(BIN)/opa
	$(BIN)/opa fmt --list --fail opa/
	$(BIN)/opa check --strict opa/
	$(BIN)/opa test --coverage --threshold 90 opa/ > /dev/null
	$(BIN)/opa test -v opa/ | tail -n 3

# Benchmarks, never part of make test: about 12 minutes on 2 cores, loopback only.
bench: setup tools
	bench/run.sh

lint: setup
	$(VENV)/bin/ruff check authz actors mint tests

clean:
	rm -rf $(VENV) $(BIN) $(STATE)
