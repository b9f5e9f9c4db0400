# mlla_dense: `make demo` (the shapes demo) and `make test` (the CPU test suite).
# Both set the environment up on first use: the active virtualenv if there is one, else ./.venv.
# A second run installs nothing (the stamp file is newer than every requirements file).

VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CURDIR)/.venv)
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip install --constraint requirements/constraints.txt
STAMP := $(VENV)/.mlla_dense-installed
TORCH_CPU ?= torch==2.13.0
TRITON ?= triton==3.6.0
TEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup: $(STAMP)

$(PYTHON):
	python3 -m venv $(VENV)

# torch first (the CPU wheel unless one is installed), then mmcv 2.1.0 from source with its ops (no wheels
# exist for it; pip caches the built wheel), then the rest and the package itself in editable mode.
$(STAMP): setup.py requirements/build.txt requirements/runtime.txt requirements/tests.txt requirements/constraints.txt | $(PYTHON)
	$(PIP) -r requirements/build.txt
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) "$(TORCH_CPU)"
	$(PYTHON) -c "import triton" 2>/dev/null || $(PIP) "$(TRITON)"
	$(PYTHON) -c "import mmcv.ops" 2>/dev/null || MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-$$(nproc)} \
		$(PIP) --no-build-isolation mmcv==2.1.0
	$(PIP) -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) --no-build-isolation --no-deps -e .
	$(PYTHON) -c "import mlla_dense, mmcv.ops; print('mlla_dense', mlla_dense.__version__, 'ready')"
	touch $(STAMP)

# The suite runs in TEST_WORKERS processes (pytest-xdist; one torch thread each): its tests are single-threaded,
# so two workers take about half the wall time on two cores. TEST_WORKERS=0 runs it in this process.
test: $(STAMP)
	$(PYTHON) -m pytest tests -n $(TEST_WORKERS) $(PYTEST_ARGS)

demo: $(STAMP)
	$(PYTHON) tools/demo.py

clean:
	rm -rf work_dirs build *.egg-info
