# The README's two set-up commands: `make demo` runs the demo, `make test` runs the tests.
# Both build .venv first if needed (torch is constrained to the local CPU build): the package in
# pip's default editable mode, with every extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c ci/constraints.txt -e ".[all,test]"
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
