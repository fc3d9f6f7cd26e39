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

# Two or more workers (pytest-xdist): the suite is mostly single-threaded XLA compilation; they share one
# compilation cache per run (tests/conftest.py). --dist worksteal: a worker that runs out of tests takes half of
# another's queue. With --dist load the two workers' queues were fixed early and one finished 67 s before the
# other (8:37 in all on 2 idle cores, per-test timeline of the whole suite). (One worker more than cores was
# slower: 8:46 against 7:51, same tree.) Extra pytest arguments: e.g. `make test PYTEST_ARGS=--durations=25`.
PYTEST_ARGS ?=
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# `make reproduce`: the named paper experiments at CPU scale (reports/NAME/README.md + PNGs; runs are reused
# or resumed), then the slow tests. E.g. `make reproduce REPRODUCE="blur_mnist omniglot" SCALE=paper`.
REPRODUCE ?= demo fig6 fig8 blur_toy2d cloning
SCALE ?= cpu-small
reproduce: $(STAMP)
	for name in $(REPRODUCE); do $(BIN)/vsml reproduce $$name --scale $(SCALE) || exit 1; done
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/inner_loop.py

clean:
	rm -rf $(VENV) runs .pytest_cache
