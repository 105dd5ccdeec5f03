# The front door: every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
NPM_STAMP := dashboard/node_modules/.installed

.PHONY: run test lint format bench clean install

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(NPM_STAMP): dashboard/package.json dashboard/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd dashboard && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: /docs falls back to a link to /openapi.json"; \
	fi

install: $(STAMP) $(NPM_STAMP)

run: install
	$(BIN)/modelops up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

BENCHES := training_time predict batch_score dispatch drift

bench: install
	@for name in $(BENCHES); do echo "== bench/$$name.py"; $(BIN)/python -m bench.$$name || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache test-output *.egg-info
