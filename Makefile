# The two commands: `make run` (the whole pipeline on embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench clean

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "rrr needs Python 3.11: install it or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rrr tasks workers tests bench celeryconfig.py
	$(BIN)/ruff format --check rrr tasks workers tests bench celeryconfig.py
	$(BIN)/mypy rrr tasks workers

test: lint
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup

run: $(STAMP)
	$(BIN)/rrr run

bench: $(STAMP)
	for b in store ingest quality backfill supabase stream; do $(BIN)/python -m bench.$$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var/*.db var/*.db-* var/spool
