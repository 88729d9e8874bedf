# `make demo` and `make test` set up .venv from requirements.txt on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26"
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Prune the default small model on the bundled digits: stabilize, prune to 62%, finetune, export.
demo: install
	$(BIN)/python prune.py

# The default suite (slow tests excluded); `make test-all` runs everything.
test: install
	$(BIN)/python -m pytest -m "not slow"

test-all: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs
