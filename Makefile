# Every target creates .venv on first use with the machine's python and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench compile sweep train long-range apps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python experiments/grad_norms.py --out results/grad_norms

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check rnnlab experiments tests
	$(BIN)/ruff format --check rnnlab experiments tests

# Every section of the benchmark (with the full-size make run's peak memory), then the
# compile report: jit(train) against value_and_grad, and cold/warm wall times of
# train.py, make run's --quick and sweep.py --quick.
bench: $(STAMP)
	$(BIN)/python experiments/bench.py --full-make-run --out results/bench
	$(BIN)/python experiments/compile_time.py --with-experiments --out results/bench_compile

compile: $(STAMP)
	$(BIN)/python experiments/compile_time.py --with-experiments --out results/compile

train: $(STAMP)
	$(BIN)/python experiments/train.py --task adding --length 100 --cell lstm --steps 3000 --out results/train/adding_lstm

long-range: $(STAMP)
	$(BIN)/python experiments/long_range.py --out results/long_range

sweep: $(STAMP)
	$(BIN)/python experiments/sweep.py --out results/sweep

# The six application studies on real data (about an hour on 2 cores), one folder each.
APPS := speech music language translation time_series classification
apps: $(STAMP)
	for app in $(APPS); do $(BIN)/python experiments/apps/$$app.py --out results/apps/$$app || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
