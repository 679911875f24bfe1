# Everything a fresh clone needs: `make demo` runs the local quickstart, `make test` the tests.
# Both create .venv on first use, so they work on a machine with nothing but python3.
#
# torch comes first, as PyTorch's CPU build: on Linux, PyPI's `torch` is the multi-GB CUDA build.
# Where pip's own configuration already offers the CPU build (a local wheel, a mirror holding
# PyTorch's CPU wheels) that is used and no other index is asked; elsewhere it comes from
# PyTorch's CPU index (TORCH_CPU_INDEX; its macOS wheels carry no +cpu label).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test lint crds bench clean images push-images chart-package

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'torch==$(TORCH_VERSION)+cpu' 2>/dev/null \
	  || { echo "torch $(TORCH_VERSION)+cpu is not on pip's configured indexes: using $(TORCH_CPU_INDEX)"; \
	       $(BIN)/python -m pip install --quiet 'torch==$(TORCH_VERSION)' --index-url $(TORCH_CPU_INDEX); }
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

# Images and chart, for a registry of your own until (and after) releases are published:
#   make images REGISTRY=registry.example.com/ml && make push-images REGISTRY=registry.example.com/ml
# A tag vX.Y.Z does the same in .github/workflows/release.yml, into ghcr.io.
REGISTRY ?= ghcr.io/kubetune
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

images:
	docker build -f operator/Dockerfile -t $(REGISTRY)/operator:$(VERSION) .
	docker build -f trainer-image/Dockerfile -t $(REGISTRY)/trainer:$(VERSION) .

push-images: images
	docker push $(REGISTRY)/operator:$(VERSION)
	docker push $(REGISTRY)/trainer:$(VERSION)

chart-package:
	helm package charts/kubetune --version $(VERSION) --app-version $(VERSION) --destination dist

clean:
	rm -rf $(VENV) kubetune-out .pytest_cache .mypy_cache .ruff_cache
