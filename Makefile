# Everything a fresh machine needs beyond Python 3.11 and make is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install tools run lint test test-fast bench clean

install: $(STAMP)

# Prometheus and promtool (Debian's package) for the alert-rule and scrape tests.
# Installed where we are root with apt; elsewhere those tests skip, saying why.
tools:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing prometheus (Debian package) for the Prometheus tests"; \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	    echo "could not install prometheus: the Prometheus tests will be skipped"; \
	  else echo "promtool not found and not root: the Prometheus tests will be skipped"; fi; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The daemon replicating a local moto "source" to three local moto "regions";
# `make run FEED=events` runs it on S3 event notifications through SQS instead.
FEED ?= poll
run: install
	$(BIN)/python -m dev.demo --config $(if $(filter events,$(FEED)),config/local-events.yaml,config/local.yaml)

# ruff (E, F, I, UP, B, C90) and mypy --strict, both configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The whole suite, as CI runs it: the lint first, then every test (unit, integration, system).
test: lint tools
	$(BIN)/python -m pytest

# The unit layer alone: in-memory fakes, no servers, no processes; seconds, not minutes.
test-fast: install
	$(BIN)/python -m pytest tests/unit

# replicator sync against rclone copy, side by side (not part of `make test`);
# pass options with BENCH_ARGS, e.g. BENCH_ARGS="--workload small --flavour rclone --runs 1".
bench: install
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache
