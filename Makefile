# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# Machines whose pip configuration lists local package mirrors that are absent print one
# "Location ... is ignored" warning per package; drop exactly those lines (pip's own
# exit status still decides).
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): setup.py pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1,<26" "setuptools>=64,<76" wheel $(PIP_QUIET)
	@# A venv made before the switch to tensorflow-cpu holds the GPU build: both install the same
	@# files, so replace it rather than install one over the other.
	if $(PY) -m pip show --quiet tensorflow 2>/dev/null; then \
	  $(PY) -m pip uninstall --quiet --yes tensorflow tf-keras tensorflow-cpu; fi
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]" $(PIP_QUIET)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -c "import tensorflow, tf_agents, reverb, tensorflow_datasets, gymnasium, ale_py, rliable, minatar, mujoco, gymnasium_robotics, minari"
	touch $(STAMP)

test: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n auto --durations=10 tests

demo: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) launch/demo.py --root_dir=runs/demo

bench: setup
	$(PY) bench/networks.py

clean:
	rm -rf $(VENV) runs
