# Everything a fresh clone needs: `make demo` runs the local quickstart, `make test` the tests.
# Both create .venv on first use (CPU torch first: a plain `torch` requirement would pull a
# multi-GB CUDA build), so they work on a machine with nothing but python3.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test lint crds bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[operator,trainer,test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/kubetune run -f examples/quickstart.yaml --volume quickstart-data=examples/data

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

crds: setup
	$(BIN)/kubetune crds

clean:
	rm -rf $(VENV) kubetune-out .pytest_cache .mypy_cache .ruff_cache
