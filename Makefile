# Labelhouse: `make demo` and `make test` work on a fresh machine with Python 3.11 and the package registries.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench clean install label-studio browser reliability

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/labelhouse demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -m "not slow and not integration"

# A real Label Studio in its own venv, for the connector's integration tests (minutes on a first run).
# The launcher is standard library only, so it does not wait for the project's venv.
label-studio:
	$(PYTHON) infra/label_studio.py install

# Chromium (Debian's package) for the Prefect UI check; a no-op when it is installed.
browser:
	infra/browser.sh install

# The project's venv, Label Studio's venv and chromium are independent: they install side by side, and
# lint runs as soon as the project's venv is there. Then the tests; the slowest are listed, to keep an eye
# on the time CI takes. (One process: tests share session servers, Label Studio, Prefect and Ray, that
# pytest-xdist 3.8's groups cannot keep on one worker under pytest 9.)
test:
	$(MAKE) --no-print-directory -j3 -Otarget lint label-studio browser
	$(BIN)/pytest -m "not reliability" --durations=15

# The whole fault matrix and load suite (under 30 minutes); writes bench/results/reliability.md.
reliability: $(STAMP)
	$(PY) tests/reliability/run.py

# Labelhouse against Lance, Delta, Iceberg, HF datasets, Parquet and Space (under 30 minutes);
# writes bench/results/latest.md and a chart per workload. The single-engine benches run alone:
# python bench/storage_core.py | versions.py | access.py | views.py | sources.py
bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) lakehouse .pytest_cache .mypy_cache .ruff_cache
