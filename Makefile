# Two commands for users: `make demo` and `make test`. Each creates .venv when missing and installs
# the project once; the stamp file makes a second run skip the install unless pyproject.toml or the
# constraints changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.opuslm-installed
DEMO_OUT ?= demo_out
PYTEST_WORKERS ?= 2

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing opuslm into $(VENV) (first run only; a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/opuslm demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m slow

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .hypothesis
