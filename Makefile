# dualdiff_ros: set-up, tests, demo and bring-up without a ROS install (see scripts/setup_env.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
RUFF   := $(VENV)/bin/ruff
CONFIG ?= config/bringup.yaml

# pytest: no cache folder in the tree, a hard per-test timeout, a short summary of non-passes.
PYTEST_FLAGS ?= -q -p no:cacheprovider --timeout=300 -ra

# Keep ROS traffic on this machine. A domain id by default; test/conftest.py gives every test
# process its own id as well. Override on the command line, e.g. `make run ROS_DOMAIN_ID=7`.
ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
ROS_DOMAIN_ID ?= 42
export ROS_AUTOMATIC_DISCOVERY_RANGE ROS_DOMAIN_ID

.PHONY: help setup test lint demo run lock clean distclean

help:
	@echo "make setup      create .venv with every pinned dependency, build the interfaces"
	@echo "make test       setup, lint, then the test suite"
	@echo "make lint       ruff check"
	@echo "make demo       setup, then 'dualdiff demo'"
	@echo "make run        setup, then 'dualdiff_bringup --config $(CONFIG)'"
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
	$(VENV)/bin/dualdiff demo

run: setup
	$(VENV)/bin/dualdiff_bringup --config $(CONFIG)

lock: setup
	$(PY) scripts/write_lock.py requirements/constraints.txt

clean:
	rm -rf build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
