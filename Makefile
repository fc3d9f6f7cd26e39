# The two commands of the README: `make demo` and `make test`. Both set up everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo test lint reproduce bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/vsml meta-train demo_digits --out $(DEMO_DIR)
	$(BIN)/vsml evaluate $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# `make reproduce`: the named paper experiments at CPU scale (reports/NAME/README.md + PNGs; runs are reused
# or resumed), then the slow tests. E.g. `make reproduce REPRODUCE="blur_mnist omniglot" SCALE=paper`.
REPRODUCE ?= demo fig6 fig8_baselines blur_toy2d cloning
SCALE ?= cpu-small
reproduce: $(STAMP)
	for name in $(REPRODUCE); do $(BIN)/vsml reproduce $$name --scale $(SCALE) || exit 1; done
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/inner_loop.py

clean:
	rm -rf $(VENV) runs .pytest_cache
