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

# pytest-xdist workers: the suite is mostly single-threaded XLA compilation, which also waits on the disk cache and
# on child processes, so one worker more than cores (at most 4) keeps the cores busy (2 cores, tests/learners and
# tests/tasks: 164 s with 3 workers, 171 s with 2, 188 s with 4). Tests go out one by one (--dist load) for the
# most even finish; they share one compilation cache per run (tests/conftest.py).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, (os.cpu_count() or 1) + 1))")
# Extra pytest arguments: e.g. `make test PYTEST_ARGS=--durations=25`.
PYTEST_ARGS ?=
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist load $(PYTEST_ARGS)

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
