# The two commands of the README:
#   make serve   install into .venv and run the embedded pipeline (beacon serve)
#   make test    install into .venv with test extras, start a local Kafka broker, run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: serve test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

serve: install
	$(BIN)/beacon serve $(ARGS)

test: install-test
	bash tests/run.sh $(ARGS)

bench: install-test
	$(BIN)/python bench/serve_bench.py $(ARGS)

clean:
	rm -rf $(VENV) beacon-data .pytest_cache
