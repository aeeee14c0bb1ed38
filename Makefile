# dualdiff_ros: set-up, tests, demo and bring-up without a ROS install (see scripts/setup_env.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
RUFF   := $(VENV)/bin/ruff
CONFIG ?= config/bringup.yaml
# Where `make demo` trains and `make run` serves from (dualdiff's default --model-dir).
MODEL_DIR ?= artifacts/models

# pytest: no cache folder in the tree, a hard per-test timeout, a short summary of non-passes.
PYTEST_FLAGS ?= -q -p no:cacheprovider --timeout=300 -ra

# `make run` and `make demo` use the shell's ROS environment (ROS_DOMAIN_ID, discovery range), so
# a client in another shell finds the nodes. Tests keep their traffic on this machine, and
# test/conftest.py gives every test process its own ROS_DOMAIN_ID.

.PHONY: help setup test lint demo run lock clean distclean

help:
	@echo "make setup      create .venv with every pinned dependency, build the interfaces"
	@echo "make test       setup, lint, then the test suite"
	@echo "make lint       ruff check"
	@echo "make demo       setup, then 'dualdiff demo'"
	@echo "make run        setup, then serve the models 'make demo' trained ($(MODEL_DIR))"
	@echo "make lock       rewrite requirements/constraints.txt from the current .venv"
	@echo "make clean      remove build products (keeps .venv)"
	@echo "make distclean  clean, and remove .venv"

setup:
	@bash scripts/setup_env.sh

lint: setup
	$(RUFF) check dualdiff_ros test scripts

test: export ROS_AUTOMATIC_DISCOVERY_RANGE = LOCALHOST
test: setup
	$(RUFF) check dualdiff_ros test
	$(PY) -m pytest $(PYTEST_FLAGS) test

demo: setup
	$(VENV)/bin/dualdiff demo --model-dir $(MODEL_DIR)

run: setup
	@test -f $(MODEL_DIR)/cabinet/general.safetensors || { \
	  echo "no models in $(MODEL_DIR): run 'make demo' first (or MODEL_DIR=... make run)"; exit 2; }
	$(VENV)/bin/dualdiff_bringup --config $(CONFIG) --model-dir $(MODEL_DIR)

lock: setup
	$(PY) scripts/write_lock.py requirements/constraints.txt

clean:
	rm -rf build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
