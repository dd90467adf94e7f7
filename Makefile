# Everything a fresh machine needs beyond Python 3.11 and make is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The daemon replicating a local moto "source" to three local moto "regions".
run: install
	$(BIN)/python -m dev.demo --config config/local.yaml

# The whole suite, as CI runs it.
test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .demo .pytest_cache
