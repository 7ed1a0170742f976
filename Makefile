# The two commands of the README:
#   make serve   install into .venv and run the embedded pipeline (beacon serve)
#   make test    install into .venv with test extras, start a local Kafka broker, run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: serve test install install-test bench clean

# Stamps in the virtualenv: an install is redone only when pyproject.toml is newer
# than the last one (or the virtualenv is new), so a second `make serve` starts at once.
INSTALLED      := $(VENV)/.installed
INSTALLED_TEST := $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(INSTALLED)

install-test: $(INSTALLED_TEST)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The test extras include the package itself: both stamps are fresh afterwards.
$(INSTALLED_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(INSTALLED)

serve: install
	$(BIN)/beacon serve $(ARGS)

test: install-test
	bash tests/run.sh $(ARGS)

bench: install-test
	$(BIN)/python bench/serve_bench.py $(ARGS)

clean:
	rm -rf $(VENV) beacon-data .pytest_cache
