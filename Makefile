# ztmint build, test and demo entry points. Every target installs what it needs first, so
# `make demo` and `make test` work on a fresh clone with only Python 3.11, Go and Node present.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/.bin
PY := $(VENV)/bin/python
OPA_VERSION := v1.22.4
STATE ?= $(CURDIR)/.state
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)
export GOBIN := $(BIN)
export GOFLAGS := -mod=mod
export PYTHONPATH := $(CURDIR)

.PHONY: setup demo test test-python test-opa test-go test-node up lint clean

setup: $(VENV)/.installed $(BIN)/opa $(BIN)/envoy-check

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

demo: setup
	$(VENV)/bin/ztmint demo --state $(STATE)/demo

up: setup
	$(VENV)/bin/ztmint up --state $(STATE)/stack

test: setup test-opa test-python

test-python:
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-opa: $(BIN)/opa
	$(BIN)/opa fmt --list --fail opa/
	$(BIN)/opa check --strict opa/
	$(BIN)/opa test --coverage --threshold 90 opa/ > /dev/null
	$(BIN)/opa test -v opa/ | tail -n 3

lint: setup
	$(VENV)/bin/ruff check authz actors mint tests

clean:
	rm -rf $(VENV) $(BIN) $(STATE)
