# make run | test | soak | lint | bench | wheel-check — each creates .venv from requirements.lock on first use;
# make bench creates .venv-bench (the same, plus the peers it measures against, from bench/requirements.lock).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

.PHONY: run test soak lint bench bench-each bench-large wheel-check clean

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

# the peers (eventsourcing) live here only: never a runtime or dev dependency
$(BENCH_STAMP): requirements.lock bench/requirements.lock pyproject.toml
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock -r bench/requirements.lock
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

run: $(STAMP)
	$(BIN)/asup readiness --root artifacts

test: $(STAMP)
	$(BIN)/pytest

# the SIGKILL crash loops (tests marked `crash`) at >= 1,000 iterations each; the counts they ran close the output
soak: $(STAMP)
	ASUP_SOAK=1 $(BIN)/pytest -m crash

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python tools/layers.py

# the built wheel, installed into a fresh venv outside the repository, runs asup from outside
wheel-check: $(STAMP)
	PY=$(PY) bash .ci/wheel-check

# every bench that emits figures, with its peers, into bench/RESULTS.md (BENCH_ARGS=--quick: a short run)
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/results.py $(BENCH_ARGS)

# each bench script's own human report, one after another
bench-each: $(STAMP)
	$(BIN)/python bench/log_bench.py
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/projection_bench.py
	$(BIN)/python bench/tail_bench.py
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/sidecar_bench.py
	$(BIN)/python bench/jetstream_bench.py

# the scaling table up to 10^7 events (~6 GB of log, streamed; the script checks free disk first)
bench-large: $(STAMP)
	$(BIN)/python bench/scaling_bench.py --large

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
