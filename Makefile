# `make demo` / `make test` create (or refresh) .venv and install the project into it when
# setup.py changed; a second run reuses it without reinstalling.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-hetero test clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23,<25"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lmgnn-run --config examples/cora/pipeline.yaml

# the three tasks on the Stack Exchange example; one table in work/stackexchange/results.json
demo-hetero: $(STAMP)
	$(VENV)/bin/lmgnn-run --config examples/stackexchange/nc.yaml \
	    --config examples/stackexchange/ec.yaml --config examples/stackexchange/lp.yaml \
	    --summary work/stackexchange/results.json

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf work
