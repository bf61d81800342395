# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export DATABASE_URL_TEST ?= postgres://postgres@127.0.0.1:5432/evalsite
export REDIS_URL_TEST ?= redis://127.0.0.1:6379/14

.PHONY: demo test test-fast lint install bench

demo:  ## embedded demo: SQLite, filesystem broker, local Celery worker, no servers
	scripts/bootstrap.sh demo
	$(PY) scripts/demo.py

test:  ## the whole suite against PostgreSQL and Redis (slow tests included), then the engine's tests on SQLite
	scripts/bootstrap.sh test
	DATABASE_URL=$(DATABASE_URL_TEST) CELERY_BROKER_URL=$(REDIS_URL_TEST) $(PY) -m pytest $(PYTEST_ARGS)
	DATABASE_URL=sqlite:///$(CURDIR)/data/evalsite.sqlite3 CELERY_BROKER_URL=$(REDIS_URL_TEST) $(PY) -m pytest -m engine $(PYTEST_ARGS)

test-fast:  ## skip the slow tests (vLLM server, browser, simulations)
	scripts/bootstrap.sh test
	DATABASE_URL=$(DATABASE_URL_TEST) CELERY_BROKER_URL=$(REDIS_URL_TEST) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)
	DATABASE_URL=sqlite:///$(CURDIR)/data/evalsite.sqlite3 CELERY_BROKER_URL=$(REDIS_URL_TEST) $(PY) -m pytest -m "engine and not slow" $(PYTEST_ARGS)

bench:  ## the benchmarks; each prints its figures and ratio (see benchmarks/RESULTS.md)
	$(PY) benchmarks/analysis.py
	DATABASE_URL=$(DATABASE_URL_TEST) $(PY) benchmarks/rater_loop.py --raters 100 --seconds 15
	$(PY) benchmarks/export.py
	DATABASE_URL=$(DATABASE_URL_TEST) $(PY) benchmarks/generation.py --prompts 16 --max-tokens 32 --batch-size 8
	$(PY) benchmarks/planning.py

lint:
	$(VENV)/bin/ruff check .

install:
	scripts/bootstrap.sh test
