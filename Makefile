# Two commands on a fresh machine: `make run` (the main job on the embedded default) and
# `make test` (the whole suite). Each creates the virtual environment if it is missing.
VENV ?= .venv
BIN := $(VENV)/bin
export LITELLM_LOCAL_MODEL_COST_MAP := True

$(BIN)/.installed: pyproject.toml
	python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (python3 is $$(python3 --version))"; exit 1; }
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: run test lint
run: $(BIN)/.installed
	$(BIN)/radiant demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy workflows activities workers models_catalog
