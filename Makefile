# Two commands a newcomer needs: `make demo` and `make test` (both set everything up first).
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines take this torch (the CPU wheel); set TORCH= to keep the torch a GPU venv already has.
TORCH ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(PY) -m pip install -q torch==$(TORCH); fi
	# Pin whatever torch is now installed so no dependency can swap it for a multi-GB CUDA build.
	$(PY) -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' > $(VENV)/constraints.txt
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(PY) -m pip install -q -e '.[dev,deploy]'
	# fastmri 0.3.0 declares torchvision, which we never use (and which breaks with this torch).
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(PY) -m pip install -q --no-deps fastmri==0.3.0
	$(PY) -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torchvision") is not None)' \
		|| (echo "torchvision is installed in $(VENV): it breaks lightning/torchmetrics; uninstall it" && exit 1)
	touch $@

## The main job on the embedded default data with the small DEQ (dense teacher -> prune -> fine-tune -> test ->
## report -> summary): the network whose pruning pays on a 2-core CPU (docs: Results).
demo: setup
	$(PY) -m spade_pl network=deq

## Every test, the slow end-to-end ones (real sweeps in subprocesses) included: what CI runs.
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

## The quick loop while developing: everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests experiments
	$(VENV)/bin/ruff format --check src tests experiments

clean:
	rm -rf $(VENV) .cache logs outputs multirun

## The documentation site at http://127.0.0.1:8000 (mkdocs-material; `mkdocs build --strict` runs in make test).
docs: setup
	$(VENV)/bin/mkdocs serve
