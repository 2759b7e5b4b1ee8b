# Everything installs into .venv; a fresh machine needs only `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maskvid demo

test: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/maskvid bench data

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
