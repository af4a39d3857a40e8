# One command to set up and run the demo, one to set up and run the tests (see README).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CI pins (torch's CPU wheel); users installing with pip keep free ranges.
CONSTRAINTS := .ci/constraints.txt
# The conformance suite runs inside the same pytest session as tests/ (one closing line).
CONFORMANCE_ARGS := --pyargs dirac_conformance --dirac-backend numpy --dirac-backend torch --dirac-backend torch@cuda --dirac-backend cupy

.PHONY: demo test lint typecheck docs bench install clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[torch,train,onnx,test,docs]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/diracnets demo --overwrite

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Packages held to mypy --strict.
TYPED := dirac_core conformance/dirac_conformance

typecheck: $(VENV)/.installed
	$(PY) -m mypy $(TYPED)

docs: $(VENV)/.installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

test: $(VENV)/.installed lint typecheck docs
	$(PY) -m pytest -n 2 tests $(CONFORMANCE_ARGS)

# The CPU benchmarks (benchmarks/bench_gpu.py needs a GPU: see docs/cupy.md).
bench: $(VENV)/.installed
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_torch_layer.py
	$(PY) benchmarks/bench_torch_models.py
	$(PY) benchmarks/bench_torch_train.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis runs docs/_build
