# The two commands a newcomer needs: `make demo` (a full rehearsal) and `make test`.
# Both provision everything they need on a fresh Debian machine (as root): apt packages,
# daemons, the local Lambda base image and the venv. Nothing else is required.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GANGWAY_HOME ?= $(CURDIR)/.gangway
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test stack stack-down status venv lint bench clean

demo: venv
	$(BIN)/gangway demo --env dev

test: venv lint
	$(BIN)/gangway stack up
	$(BIN)/pytest -q -n 2 --dist loadgroup
	PYTHONPATH=service $(BIN)/pytest -q service/tests

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

stack: venv
	$(BIN)/gangway stack up

stack-down: venv
	$(BIN)/gangway stack down

status: venv
	$(BIN)/gangway stack status

lint: venv
	$(BIN)/ruff check .

bench: venv stack
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/gate.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/faults.py

clean:
	rm -rf $(VENV) service/vendor
