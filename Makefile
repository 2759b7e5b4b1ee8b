# Everything installs into .venv; a fresh machine needs only `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	# the published DALL-E and taming-transformers encoders: references the tokenizer converter is tested against;
	# --no-deps leaves out what they do not need for that (mypy, blobfile, pytorch-lightning, omegaconf)
	$(PY) -m pip install --quiet --no-deps 'DALL-E==0.1' 'taming-transformers==0.0.1'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maskvid demo

# pytest in two processes (pytest-xdist): on 2 cores the suite's waits — subprocesses, loader workers, torchrun's
# rendezvous — overlap with the other process's work (10.7 -> 6 min). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)
	$(VENV)/bin/maskvid bench data

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
