# Two commands matter (see README): `make demo` and `make test`. Each creates .venv with
# everything it needs on first use; only python3 (3.11+) and make are assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck check fuzz soak bench bench-quick bench-instructions bench-fleet clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[server,redis,fastapi,prometheus,otel]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command node nodejs
	tools/ensure-command npm npm
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dpop_guard tests examples benchmarks
	$(BIN)/ruff format --check dpop_guard tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

fuzz: $(STAMP)
	DPOP_GUARD_FUZZ_EXAMPLES=$${DPOP_GUARD_FUZZ_EXAMPLES:-25000} $(BIN)/python -m pytest -q -m fuzz -p no:cacheprovider tests/fuzz

bench: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command wrk
	tools/ensure-command valgrind
	$(BIN)/python -m benchmarks

bench-instructions: $(STAMP)
	tools/ensure-command valgrind
	$(BIN)/python -m benchmarks.instructions

bench-fleet: $(STAMP)
	tools/ensure-command redis-server
	$(BIN)/python -m benchmarks.fleet

bench-quick: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command wrk
	$(BIN)/python -m benchmarks --quick

soak: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command wrk
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis
