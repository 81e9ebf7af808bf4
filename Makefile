# One entry point for people and CI. `make run` and `make test` are the README's
# two Quick start commands; .ci/run calls `make test`.

SHELL := /bin/bash
# The first Python that PySpark 4.2 supports (3.10-3.12).
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup jars blas run test test-fast test-slow lint bench clean dist browser

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.10, 3.11 or 3.12 is required (python3 --version)"; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv and install ShopLake with its dev tools

# A per-machine pseudonym key for the local demo lake only: generated once, never
# committed. Production sets SHOPLAKE_PSEUDONYM_SECRET itself (which wins here too).
SECRET_FILE := .secrets/pseudonym.key

$(SECRET_FILE):
	@mkdir -p .secrets && chmod 700 .secrets
	@$(PYTHON) -c "import secrets; print(secrets.token_hex(32))" > $@ && chmod 600 $@
	@echo "created a local development pseudonym secret in $@ (not for production)"

# The delta-spark jars for the pinned pyspark/delta-spark pair, fetched once with Maven
# into ./jars (git-ignored); sessions then load them as spark.jars (no download at start).
# Without Maven the lake is written by delta-rs instead, and this says so; CI must have them.
jars: setup  ## fetch the delta-spark jars into ./jars (Maven); without them the lake uses delta-rs
	@$(BIN)/shoplake jars || { echo "warning: no delta-spark jars (see above): the lake will be written by delta-rs"; \
	  [ -z "$${CI:-}" ]; }

run: setup jars blas $(SECRET_FILE)  ## generate sample data, run the pipeline on the local lake (./lake), write its HTML report
	$(BIN)/shoplake generate
	SHOPLAKE_PSEUDONYM_SECRET="$${SHOPLAKE_PSEUDONYM_SECRET:-$$(cat $(SECRET_FILE))}" $(BIN)/shoplake pipeline
	$(BIN)/shoplake report

dist: setup  ## build dist/ for spark-submit: the --py-files zip (common, jobs, shoplake, conf), main.py and the wheel
	$(BIN)/shoplake package --out dist

# ruff, then the import contracts of pyproject.toml [tool.importlinter] (docs/architecture.md).
lint: setup  ## ruff and the import contracts (common imports neither jobs nor shoplake; data jobs import only common)
	$(BIN)/ruff check common jobs shoplake tests bench
	$(BIN)/lint-imports --no-cache

# The report test opens the HTML report in headless Chromium (Debian package `chromium`).
# Installed when missing and apt-get can (root, or password-less sudo); otherwise the
# report test fails and says how to install it.
browser:  ## install headless Chromium for the report test when it is missing
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n" ); \
	    echo "installing chromium (headless browser for the report test)"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	      || echo "warning: could not install chromium; the report test will fail until it is installed"; \
	  else echo "warning: chromium is missing and apt-get is not available; the report test will fail"; fi; }

# Native BLAS/LAPACK for Spark ML (ALS solves its normal equations with LAPACK): Spark
# loads the system's libblas.so.3 / liblapack.so.3 and falls back to Java code (with a
# warning) when there is none. Installed when missing and apt-get can (root, or
# password-less sudo); otherwise everything still works, only ALS is slower.
blas:  ## install OpenBLAS (libblas.so.3) for Spark ML when it is missing
	@ldconfig -p 2>/dev/null | grep -q 'libblas\.so\.3 ' || { \
	  if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n" ); \
	    echo "installing OpenBLAS (native BLAS/LAPACK for Spark ML)"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null \
	      || echo "warning: could not install libopenblas0-pthread; Spark ML will use its Java BLAS"; \
	  else echo "note: no libblas.so.3 and no apt-get as root: Spark ML will use its Java BLAS (slower ALS)"; fi; }

# Two worker processes, each with its own Spark session: most of a test's time is
# a JVM starting, a single-threaded driver or a subprocess being waited on, so two
# run side by side on two cores. A test file stays on one worker (--dist loadfile),
# so its module fixtures are built once; files go out longest first, in the order
# tests/conftest.py sorts them (--no-loadscope-reorder). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup jars blas lint browser  ## the whole suite: lint, then every test (slow ones included)
	$(BIN)/pytest -m "slow or not slow" --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup jars
	$(BIN)/pytest

test-slow: setup jars
	$(BIN)/pytest -m slow || [ $$? -eq 5 ]

clean:
	rm -rf lake data spark-warehouse metastore_db .pytest_cache
