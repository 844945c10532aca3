# Two commands matter (see README): `make demo` and `make test`. Each creates .venv with
# everything it needs on first use; only python3 (3.11+) and make are assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The fast pure-core tests: no server, no Redis, no subprocess of ours (markers in
# pyproject.toml; slow tests are classed in tests/conftest.py).
UNIT   := not e2e and not redis and not slow and not fuzz

LOWEST := .venv-lowest

# `make demo` and `make docs` need a small part of the development environment each: a venv
# of their own with only that (the demo: the package, its httpsig extra and uvicorn's fast
# stack; the docs: the package and the site's tools), so neither builds the whole .venv.
DEMO_VENV := .venv-demo
DOCS_VENV := .venv-docs

.PHONY: demo demo-forward-auth test test-unit test-versions doctest docs test-lowest lint typecheck check fuzz soak bench bench-quick bench-instructions bench-http-instructions bench-split bench-fleet bench-mtls bench-forward-auth wheel-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[server,redis,fastapi,prometheus,otel,httpsig]" --group dev
	touch $(STAMP)

$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[server,httpsig]"
	touch $@

$(DOCS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e . --group docs
	touch $@

demo: $(DEMO_VENV)/.installed
	tools/ensure-command nginx nginx   # the demo's mTLS leg runs behind nginx
	$(DEMO_VENV)/bin/python -m dpop_guard.devtools.demo

# An API with no Python in it (nginx), protected through nginx and the forward-auth server.
demo-forward-auth: $(DEMO_VENV)/.installed
	tools/ensure-command nginx nginx
	$(DEMO_VENV)/bin/python -m examples.forward_auth_demo

test: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command node nodejs
	tools/ensure-command npm npm
	tools/ensure-command chromium chromium
	tools/ensure-command nginx nginx
	tools/ensure-command haproxy haproxy
	tools/ensure-command caddy caddy   # the forward-auth tests run behind Caddy too
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "$(UNIT)" $(PYTEST_ARGS)

# The >>> examples in the package's docstrings (tests/test_hygiene.py runs them in `make test`).
doctest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules dpop_guard

# The documentation site (mkdocs-material + mkdocstrings), built --strict: a broken
# reference, link or snippet fails the build.
docs: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/mkdocs build --strict --quiet --site-dir site

# The fast unit suite on every Python the package supports (3.11 is the main venv; 3.12
# and 3.13 come from pyenv where the machine has it, else from PATH), each in its own venv.
test-versions: test-unit
	tools/python-versions 3.12 3.13

# The whole suite against the lowest version of each runtime dependency that
# pyproject.toml allows (each "name>=X" pinned to X), in a venv of its own.
test-lowest:
	tools/ensure-command redis-server
	tools/ensure-command node nodejs
	tools/ensure-command npm npm
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(LOWEST)/bin/python -c 'import re, tomllib; \
	  deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	  pins = [re.sub(r"\[.*\]", "", d).replace(">=", "==") for d in deps]; \
	  open("$(LOWEST)/constraints.txt", "w").write("\n".join(pins) + "\n")'
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -c $(LOWEST)/constraints.txt -e ".[redis,fastapi,prometheus,otel,httpsig]" --group tests
	$(LOWEST)/bin/python -m pip freeze | grep -iE "^($$(sed 's/==.*//' $(LOWEST)/constraints.txt | paste -sd'|'))=="
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dpop_guard tests examples benchmarks
	$(BIN)/ruff format --check dpop_guard tests examples benchmarks
	$(BIN)/lint-imports

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

# The server's instructions per request over real HTTP (uvicorn under callgrind).
bench-http-instructions: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command wrk
	tools/ensure-command valgrind
	$(BIN)/python -m benchmarks.http_instructions

# The server's CPU per request by part of the stack (OpenSSL, Python, kernel, ...), sampled.
bench-split: $(STAMP)
	tools/ensure-command redis-server
	tools/ensure-command wrk
	tools/ensure-command perf linux-perf
	$(BIN)/python -m benchmarks.cpu_split

# A cache hit on an mTLS route against a DPoP route, both through the same nginx.
bench-mtls: $(STAMP)
	tools/ensure-command nginx nginx
	$(BIN)/python -m benchmarks.mtls

# nginx + the forward-auth server + a static upstream against the guard in process.
bench-forward-auth: $(STAMP)
	tools/ensure-command nginx nginx
	tools/ensure-command wrk
	$(BIN)/python -m benchmarks.forward_auth

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

# Build the wheel and the sdist, check them with twine, install the wheel into a fresh venv
# in a temporary directory outside the repository, and run a smoke import, the CLI and the
# demo from that install (so nothing is borrowed from the work tree).
wheel-smoke: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*
	$(BIN)/python -c 'import sys, tarfile, zipfile, glob; \
	  whl = zipfile.ZipFile(glob.glob("dist/*.whl")[0]).namelist(); \
	  sdist = tarfile.open(glob.glob("dist/*.tar.gz")[0]).getnames(); \
	  assert any(n.endswith("licenses/LICENSE") for n in whl), "LICENSE missing from the wheel"; \
	  assert any(n.endswith("/LICENSE") for n in sdist), "LICENSE missing from the sdist"; \
	  assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in whl), whl'
	set -e; repo=$$(pwd); tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(PYTHON) -m venv "$$tmp/venv"; \
	  "$$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
	    "$$(ls "$$repo"/dist/*.whl)[server]"; \
	  cd "$$tmp"; \
	  "$$tmp/venv/bin/python" -c 'import dpop_guard, dpop_guard.proof, dpop_guard.devtools.simulator; \
	    from importlib.metadata import version; \
	    assert dpop_guard.__version__ == version("dpop_guard"); \
	    assert dpop_guard.__file__.startswith("'"$$tmp"'"), dpop_guard.__file__; \
	    print("smoke: dpop_guard", dpop_guard.__version__, "from", dpop_guard.__file__)'; \
	  "$$tmp/venv/bin/dpop-guard" --help >/dev/null; \
	  "$$tmp/venv/bin/python" -m dpop_guard.devtools.demo

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis dist
