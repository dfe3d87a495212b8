# cfanalytics — `make demo` and `make test` set up their own virtual environment (.venv/).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest workers: independent test files run in parallel (pytest-xdist); `make test JOBS=1` runs them one by one.
JOBS ?= auto

.PHONY: help demo test lint typecheck bench setup clean docs lab notebooks chromium mutation

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV)/ (the first time takes about 2 minutes; each package is listed as it comes)…"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --progress-bar off -e '.[all]' \
	  | awk '/^Collecting /{n++; printf "  [%3d] %s\n", n, $$2; fflush()} /^Successfully installed/{print "  installed."}'
	@touch $(STAMP)

setup: $(STAMP)  ## create or update .venv/

demo: $(STAMP)  ## build the sample account, its store and HTML report; print where they are
	$(BIN)/cfanalytics demo

# The browser tests drive Debian's chromium: installed here when missing and we are root, else one line says what to do.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium for the browser tests (apt-get, about a minute)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "make test: the browser tests need Debian's chromium at /usr/bin/chromium: run 'sudo apt-get install chromium', then make test again" >&2; \
	  exit 1; \
	fi

test: $(STAMP) chromium  ## lint, type-check, then every test (browser tests and notebooks included; about 15 minutes on 2 cores)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks/

# JupyterLab on notebooks/ with the sample store ready (built on first use), bound to 127.0.0.1, headless,
# root allowed; prints the URL with its token.
lab: $(STAMP)  ## JupyterLab on notebooks/ (prints the URL with its token); LAB_PORT=8888 to choose the port
	$(BIN)/python -m cfanalytics.lab $(if $(LAB_PORT),--port $(LAB_PORT),)

lint: $(STAMP)  ## ruff check, format check and the type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy

docs: $(STAMP)  ## regenerate docs/columns.md
	$(BIN)/python -m cfanalytics.docs

# BENCH_ARGS: e.g. make bench BENCH_ARGS="--sizes 1M,10M,50M" (50M is opt-in), or "--quick"
bench: $(STAMP)  ## speed and memory side by side with DuckDB, Polars and pandas (long; not in CI)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Mutation testing of the core with mutmut 3 (config in pyproject.toml [tool.mutmut]; works in mutants/, kept between
# runs so a second run only retests what changed). One module at a time on a shared machine:
#   make mutation MODULES=cfanalytics/redaction.py MUTATION_JOBS=1
MUTATION_MODULES := cfanalytics/diagnose/incidents.py cfanalytics/diagnose/gaps.py cfanalytics/diagnose/error_rates.py \
  cfanalytics/diagnose/attribution.py cfanalytics/diagnose/error_kinds.py cfanalytics/normalize.py cfanalytics/store.py \
  cfanalytics/redaction.py cfanalytics/diagnose/suspects.py
MODULES ?= $(MUTATION_MODULES)
MUTATION_JOBS ?= 2
SEED ?= 1
mutation: $(STAMP)  ## mutation score of the core (long; not in CI); MODULES=cfanalytics/redaction.py for one module; SAMPLE=80 SEED=1 for a random sample per module
	@test -x $(BIN)/mutmut || $(BIN)/python -m pip install --quiet -e '.[mutation]'
ifdef SAMPLE
	$(BIN)/python benchmarks/mutation_sample.py generate
	time $(BIN)/mutmut run --max-children $(MUTATION_JOBS) \
	  $$($(BIN)/python benchmarks/mutation_sample.py sample --n $(SAMPLE) --seed $(SEED) $(MODULES))
	@$(BIN)/python benchmarks/mutation_sample.py report --n $(SAMPLE) --seed $(SEED) $(MODULES)
else
	time $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MODULES),'$(subst /,.,$(m:.py=)).*')
	@$(BIN)/mutmut results --all true | awk -v mods='$(subst /,.,$(MODULES:.py=))' ' \
	  BEGIN { n = split(mods, m, " "); for (i = 1; i <= n; i++) want[m[i]] = 1 } \
	  { name = $$1; sub(/:$$/, "", name); mod = name; sub(/\.x_.*$$/, "", mod); sub(/\.xǁ.*$$/, "", mod); \
	    if (!(mod in want)) next; total[mod]++; st = $$2; for (j = 3; j <= NF; j++) st = st " " $$j; count[mod, st]++ } \
	  END { printf "%-34s %8s %7s %9s %6s\n", "module", "mutants", "killed", "survived", "other"; \
	    for (i = 1; i <= n; i++) { k = m[i]; o = total[k] - count[k, "killed"] - count[k, "survived"]; \
	      printf "%-34s %8d %7d %9d %6d  %.1f %%\n", k, total[k], count[k, "killed"], count[k, "survived"], o, \
	        total[k] ? 100 * count[k, "killed"] / total[k] : 0 } }'
	@echo "survivors: $(BIN)/mutmut results; one diff: $(BIN)/mutmut show NAME"
endif

clean:  ## remove .venv and the generated data
	rm -rf $(VENV) data/sample data/store data/report*.html
