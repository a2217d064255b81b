# Quorum: `make demo` runs the product, `make test` runs the tests. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test bench browser serve worker clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py collectstatic --noinput -v 0
	@echo "Serving Quorum on http://$(HOST):$(PORT)/"
	QUORUM_DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/queue.py

clean:
	rm -rf $(VENV) var test-artifacts
