# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<25" "setuptools<76" wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	$(PY) -c "import tensorflow, tf_agents, reverb, tensorflow_datasets, gymnasium, ale_py, rliable, minatar"
	touch $(STAMP)

test: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q --durations=10 tests

demo: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) launch/demo.py --root_dir=runs/demo

bench: setup
	$(PY) bench/networks.py

clean:
	rm -rf $(VENV) runs
