# The two set-up commands of the README: `make demo` runs the demo, `make test` runs the tests.
# Both create .venv first if it is missing (torch is constrained to the local CPU build).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/composer-cfg: pyproject.toml ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c ci/constraints.txt -e ".[all,test]"
	touch $@

install: $(BIN)/composer-cfg

demo: install
	$(BIN)/composer-cfg

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_logging.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
