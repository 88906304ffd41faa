# Every target creates the virtual environment and installs what it needs, idempotently.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS := models/.built
# The benchmarks' reference server (KServe's ModelServer) needs a venv of its own.
KSERVE_STAMP := .venv-kserve/.installed
# NannyML (benchmarks/cbpe_vs_nannyml.py's reference) pins its own numpy and pandas: a venv of its
# own too, used by that benchmark only (make bench, make venv-nannyml), never by the tests.
NANNYML_STAMP := .venv-nannyml/.installed
# TensorFlow detectors (OutlierAE/VAE, AdversarialAE, ModelDistillation) run in a venv of their
# own: TensorFlow CPU beside alibi-detect, without torch. Tests drive it as child processes.
TF_VENV ?= .venv-tf
TF_STAMP := $(TF_VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv venv-tf venv-nannyml models test test-fast lint demo bench soak sysdeps promdeps clean help

help:
	@echo "make demo   - install, build the example models, run the stack end to end (tabular, then LLM)"
	@echo "make test   - install and run the test suite"
	@echo "make test-fast - the tests that start no process (under 2 minutes): the edit loop"
	@echo "make lint   - ruff (format check, lint), mypy and the import-layering contracts"
	@echo "make bench  - run the benchmarks (JSON in benchmarks/results/)"
	@echo "make soak   - 30 minutes of traffic through the whole stack (benchmarks/results/soak.json)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	touch $@

venv: $(STAMP)

# tf-keras names the full `tensorflow` wheel as a dependency; tensorflow-cpu provides the same
# package, so tf-keras goes in without its dependencies (saves a 600 MB download).
# `infertap up` runs the workers of TensorFlow Detectors with $(TF_VENV)/bin/python
# (stack/interpreter.py): the worker's Kafka client and CloudEvents come with `logger`, its
# codecs (orjson) and HTTP ingress with `serving`. The Makefile is a prerequisite so a change
# of this line reaches an existing $(TF_VENV) (pip then installs only what is missing).
$(TF_STAMP): pyproject.toml constraints.txt Makefile
	test -x $(TF_VENV)/bin/python || python3 -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install -q -c constraints.txt tensorflow-cpu==2.18.1 tensorflow-probability==0.25.0 alibi-detect==0.13.0 -e '.[detectors,logger,serving]'
	$(TF_VENV)/bin/python -m pip install -q --no-deps tf-keras==2.18.0
	touch $@

venv-tf: $(TF_STAMP)

# Debian packages the tests and benchmarks drive for real (nginx as the reference proxy).
sysdeps:
	@command -v nginx >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx-light >/dev/null; }

$(MODELS): $(STAMP) examples/build_models.py
	$(PY) -m examples.build_models --out models
	touch $@

models: $(MODELS)

# Debian's Prometheus: the dashboard tests run the real server against a running stack and
# promtool checks and unit-tests the alert rules.
# Chromium renders `infertap report`'s page in the report test.
promdeps:
	@{ command -v prometheus && command -v promtool && command -v chromium; } >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null; }

test: venv models promdeps venv-tf
	$(PY) -m pytest -q tests

# Tests marked `fast` start no process; INFERTAP_FAST_LANE=1 makes one that tries fail (tests/conftest.py).
test-fast: venv models
	INFERTAP_FAST_LANE=1 $(PY) -m pytest -q -m fast tests

# The gate CI runs before the tests (.ci/run). Levels and why: CONTRIBUTING.md.
lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: venv models
	$(PY) -m examples.demo
	$(PY) -m examples.llm_demo

$(KSERVE_STAMP): $(STAMP) benchmarks/serving_throughput.py
	$(PY) -m benchmarks.serving_throughput --install-reference-only
	touch $@

$(NANNYML_STAMP): $(STAMP) benchmarks/cbpe_vs_nannyml.py
	$(PY) -m benchmarks.cbpe_vs_nannyml --install-reference-only

venv-nannyml: $(NANNYML_STAMP)

bench: venv models sysdeps $(KSERVE_STAMP) $(NANNYML_STAMP)
	$(PY) -m benchmarks.run_all

soak: venv models
	$(PY) -m benchmarks.soak --minutes $${SOAK_MINUTES:-30}

clean:
	rm -rf $(VENV) .venv-kserve .venv-nannyml $(TF_VENV) models
