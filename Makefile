# The front door: every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
NPM_STAMP := dashboard/node_modules/.installed

.PHONY: run test lint format bench clean install chromium

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

# Browser tests drive Debian's Chromium (never a downloaded browser); as root, install it.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
			|| (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null); \
		else \
			echo "Debian's chromium is missing: sudo apt-get install chromium (browser tests skip without it, and fail under CI=true)"; \
		fi; \
	fi

# Independent test files run side by side; a file's tests stay together, in order.
# Files go out in collection order (tests/conftest.py puts the longest first); xdist's
# own reorder (most tests first) would leave the long one-test files to the end.
TEST_WORKERS ?= 3

test: lint chromium
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

BENCHES := training_time predict batch_score dispatch workers drift

bench: install
	@for name in $(BENCHES); do echo "== bench/$$name.py"; $(BIN)/python -m bench.$$name || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache test-output *.egg-info
