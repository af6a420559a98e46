# Relais: `make run` serves the portal on a laptop; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
BROWSER_DIR := tests/browser

.PHONY: run test test-clock-ahead lint typecheck translations browser-deps pdfjs clean bench soak

# requirements*.txt pin and hash every package, transitive ones included (compiled from
# requirements*.in by pip-tools: the README's "Dependencies"). --require-hashes refuses a file
# whose hash differs and any dependency the lock forgot (so no --no-deps, which would hide one);
# --only-binary :all: builds no sdist, whose build backend pip would fetch unhashed. pip is the
# venv's own (ensurepip, shipped with the interpreter), not upgraded from the index unpinned.
PIP_INSTALL := $(PY) -m pip install --quiet --require-hashes --only-binary :all:

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

translations: $(VENV)/.runtime
	$(VENV)/bin/pybabel compile --statistics -d translations 2>&1 | grep -v '^$$' || true

run: $(VENV)/.runtime translations pdfjs
	mkdir -p instance
	$(FLASK) db upgrade
	$(FLASK) demo load
	$(FLASK) hin dev-settings
	@echo "Relais: http://127.0.0.1:5000 (console SMS and email)"
	RELAIS_ENV=development $(FLASK) run --host 127.0.0.1 --port 5000

# Debian's Chromium for the browser tests (never a browser downloaded by a test tool), and
# axe-core from npm for the accessibility checks.
browser-deps:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@test -f $(BROWSER_DIR)/node_modules/axe-core/axe.min.js || \
	  npm install --prefix $(BROWSER_DIR) --no-audit --no-fund --silent

# pdf.js draws PDFs in the viewer, served from our own origin (strict CSP, no CDN). The npm
# package is fetched into static/vendor-src/ and its two built modules copied to static/vendor/;
# both folders are generated and git-ignored.
PDFJS_VERSION := 4.10.38
PDFJS_SRC := static/vendor-src/node_modules/pdfjs-dist/build
PDFJS_DIR := static/vendor/pdfjs

pdfjs: $(PDFJS_DIR)/.version-$(PDFJS_VERSION)

$(PDFJS_DIR)/.version-$(PDFJS_VERSION):
	npm install --prefix static/vendor-src --no-audit --no-fund --silent --no-save pdfjs-dist@$(PDFJS_VERSION)
	rm -rf $(PDFJS_DIR) && mkdir -p $(PDFJS_DIR)
	cp $(PDFJS_SRC)/pdf.min.mjs $(PDFJS_SRC)/pdf.worker.min.mjs $(PDFJS_DIR)/
	touch $@

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

test: $(VENV)/.dev translations browser-deps pdfjs lint typecheck
	$(PY) -m pytest

# The same suite with the clock two years ahead (Debian's libfaketime, installed with apt when
# missing): no test may depend on today's date. Only the wall clock moves
# (FAKETIME_DONT_FAKE_MONOTONIC=1): with a faked monotonic clock every timed wait in Python (a
# lock, an event, a thread join) would wait two years. In that mode libfaketime 0.9.10 breaks
# time.sleep() (EINVAL), which tests/support/clock_ahead/monotonic_sleep.c, preloaded first,
# mends. PostgreSQL's now() does not move (another server), so a test comparing the two takes
# one of them explicitly. TEST_DATABASE_URL and REDIS_URL work as for `make test`.
CLOCK_AHEAD ?= 2 years
LIBFAKETIME = /usr/lib/$(shell gcc -dumpmachine)/faketime/libfaketime.so.1
CLOCK_SHIM := $(VENV)/clock-ahead/monotonic_sleep.so

$(CLOCK_SHIM): tests/support/clock_ahead/monotonic_sleep.c
	mkdir -p $(dir $@)
	gcc -shared -fPIC -O2 -Wall -Wextra -o $@ $< -ldl

test-clock-ahead: $(VENV)/.dev translations browser-deps pdfjs $(CLOCK_SHIM)
	@test -f $(LIBFAKETIME) || { \
	  echo "installing Debian's faketime"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime; }
	@echo "clock moved ahead by $(CLOCK_AHEAD): $$(date -d '+$(CLOCK_AHEAD)')"
	LD_PRELOAD="$(abspath $(CLOCK_SHIM)):$(LIBFAKETIME)" FAKETIME_DONT_FAKE_MONOTONIC=1 \
	  FAKETIME="+$$(( $$(date -d '+$(CLOCK_AHEAD)' +%s) - $$(date +%s) ))" $(PY) -m pytest

clean:
	rm -rf $(VENV) $(BROWSER_DIR)/node_modules static/vendor static/vendor-src .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (never part of `make test`): builds the PostgreSQL databases relais_bench_10k,
# _100k and _1m the first time (bulk COPY, about 7 minutes in all; `--rebuild` to redo), then
# runs the app under gunicorn with 2 workers against Debian's wrk and prints the table, written
# to bench/results/. PostgreSQL on 127.0.0.1:5432 (BENCH_PG) and Redis db 7 (BENCH_REDIS_URL).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--sizes 10k --duration 5".
BENCH_ARGS ?=

bench: $(VENV)/.dev translations
	@command -v wrk >/dev/null || { \
	  echo "installing Debian's wrk (load generator)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	@df -h / | tail -1 | awk '{print "disk free for the databases: " $$4}'
	$(PY) -m bench.run $(BENCH_ARGS)

# Soak (never part of `make test`; tests/test_soak.py runs a 15-second version there): drops and
# recreates the PostgreSQL database relais_soak (BENCH_PG), enrols 200 doctors, runs the app under
# gunicorn with the production profile (GUNICORN_WORKERS, default 2), the local Twilio-compatible
# server and the RQ worker (Redis db 8, SOAK_REDIS_URL), signs every doctor in (password + SMS
# code), then browses with 200 sessions for 5 minutes while the DPI posts 5 letters/s. Prints
# requests, 5xx, lost and duplicated deliveries, latencies and worker memory, written to
# bench/results/soak.md; exits 1 on a 5xx, a lost or duplicated delivery, or memory growth.
# SOAK_ARGS passes options, e.g. SOAK_ARGS="--duration 60 --sessions 50".
SOAK_ARGS ?=

soak: $(VENV)/.dev translations
	$(PY) -m bench.soak $(SOAK_ARGS)
