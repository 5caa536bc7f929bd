# fcn-repro: every target sets up what it needs (a virtual environment with pinned dependencies).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: help venv test bench clean-venv

help:
	@echo "make test            create .venv, install pinned dependencies, run the test suite (no GPU needed)"
	@echo "make bench           speed and memory benchmarks -> results/bench/"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade -c constraints.txt setuptools
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
