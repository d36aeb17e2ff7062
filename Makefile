# speechft: `make demo` runs the whole flow on the bundled example; `make test` runs the tests; `make lint` checks style.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch 2.14.1 is the build that sits on these machines' disk; torchaudio 2.11 runs beside it.
TORCH_PINS := torch==2.14.1 torchaudio==2.11.1

.PHONY: setup test test-fast lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not distributed"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) build *.egg-info demo-run
