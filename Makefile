# The README's two set-up commands: `make demo` runs the demo, `make test` runs the tests.
# Both build .venv first if needed (torch is constrained to the local CPU build).
#
# The editable install is setuptools' "strict" mode: Hydra finds its search path plugin by
# walking the hydra_plugins namespace package, which the default editable mode hides. Strict
# mode links files, so the venv is refreshed when a source directory changes (a file added).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCE_DIRS := $(shell find composer_cfg conf hydra_plugins -type d -not -name __pycache__ 2>/dev/null)

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml ci/constraints.txt $(SOURCE_DIRS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c ci/constraints.txt -e ".[all,test]" --config-settings editable_mode=strict
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/composer-cfg

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_logging.py
	$(BIN)/python benchmarks/bench_build.py

clean:
	rm -rf $(VENV) build *.egg-info outputs multirun .pytest_cache
