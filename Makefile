# tunestack: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint schema bench clean

$(STAMP): pyproject.toml setup.py trainer_image/pyproject.toml infra/checks/_textscan.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e trainer_image -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunestack demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check infra trainer_image tests bench
	$(VENV)/bin/ruff format --check infra trainer_image tests bench
	$(VENV)/bin/mypy

schema: $(STAMP)
	$(VENV)/bin/tunestack schema

bench: $(STAMP)
	$(PY) bench/validate_throughput.py
	$(PY) bench/plan_scale.py
	$(PY) bench/trainer_vs_trl.py
	$(PY) bench/storage_door.py
	$(PY) bench/predict_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
