# Set-up is two commands in a fresh clone: `make venv`, then `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Prefect's ephemeral API, as used by the tests and the demo: no analytics (its telemetry
# heartbeat otherwise races the first writes and logs "database is locked"), and time for
# a cold server start on a 2-core machine.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: venv demo test check lint bench clean

venv: $(STAMP)

# Re-installs only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev,jax]'
	touch $@

# The example job file is examples/sweepflow.yaml; runs from there so its state folder
# is examples/.sweepflow.
demo: venv
	cd examples && ../$(BIN)/sweepflow run job_sequential --dry-run
	cd examples && ../$(BIN)/sweepflow run job_sequential

# Every test: unit, flow, server, browser and SLURM tiers (what CI runs).
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tier for the edit-test loop: pure logic and in-process libraries, no Prefect
# API, browser or SLURM (tests/conftest.py marks the rest `e2e`). Under a minute.
check: venv
	$(BIN)/python -m pytest -q -m "not e2e" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/expand.py

# Removes the environment and build outputs; leaves run state (.sweepflow/, mlruns/) alone.
clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
