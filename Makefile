# The README's two set-up commands: `make demo` runs the demo, `make test` runs the tests.
# Both build .venv first if needed (torch is constrained to the local CPU build): the package in
# pip's default editable mode, with every extra. `make test` also builds .venv-base: the package
# alone, in setuptools' strict editable mode (it links files: refreshed when a source directory
# changes), where tests_base/ checks the install modes and the hints for missing extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_VENV := .venv-base
BASE_BIN := $(BASE_VENV)/bin
BASE_STAMP := $(BASE_VENV)/.installed
SOURCE_DIRS := $(shell find composer_cfg conf -type d -not -name __pycache__ 2>/dev/null)

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c .ci/constraints.txt -e ".[all,test]"
	touch $@

$(BASE_STAMP): pyproject.toml .ci/constraints.txt $(SOURCE_DIRS)
	test -x $(BASE_BIN)/python || $(PYTHON) -m venv $(BASE_VENV)
	$(BASE_BIN)/python -m pip install -q --upgrade pip
	$(BASE_BIN)/pip install -q -c .ci/constraints.txt -e . "pytest>=8" "pytest-timeout>=2.3.1" \
		--config-settings editable_mode=strict
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/composer-cfg

test: install $(BASE_STAMP)
	$(BIN)/python -m pytest -q
	$(BASE_BIN)/python -m pytest -q tests_base

test-fast: install  # the tests that take less than about a second each (not marked slow): a quick look while working
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_logging.py
	$(BIN)/python benchmarks/bench_build.py

clean:
	rm -rf $(VENV) $(BASE_VENV) build *.egg-info outputs multirun .pytest_cache
