# Two commands for a newcomer: `make lab` (learn) and `make test` (check everything).
# Both create the local virtual environment .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Optional extra index for torch, e.g. the CPU-only wheels (see README).
TORCH_INDEX ?=
SHARED_ML100K ?= ../shared/data/ml-100k
STAMP := $(VENV)/.installed

.PHONY: lab test data results results-quick readme html slides serve airflow airflow-run lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so that the package's own `torch` requirement is already met
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Seed data/ml-100k from a local pristine copy when one is beside the checkout (CI, offline machines);
# otherwise the loader downloads MovieLens on first use.
data:
	@if [ ! -f data/ml-100k/u.data ] && [ -d $(SHARED_ML100K) ]; then \
		mkdir -p data/ml-100k && cp $(SHARED_ML100K)/* data/ml-100k/ && echo "seeded data/ml-100k from $(SHARED_ML100K)"; \
	fi

# --allow-root only where you are root (containers), which Jupyter otherwise refuses.
lab: $(STAMP) data
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Unit tests, then every notebook top to bottom on a fresh kernel (nbmake). Headline metrics from this
# run go to build/results so that the committed ones (from `make results`) stay as measured.
test: $(STAMP) data
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	RECSYS_TUTORIAL_RESULTS=$(CURDIR)/build/results $(BIN)/pytest tests notebooks --nbmake --nbmake-timeout=1200

# Re-measure: execute every notebook, record its metrics, wall time and machine, regenerate the README tables.
# A notebook that fails keeps its recorded results; the command names it and exits non-zero after the rest.
results: $(STAMP) data
	$(BIN)/python -m recsys_tutorial.results run

# The same with QUICK=1 (smaller sizes, same code): records each notebook's QUICK run time only.
results-quick: $(STAMP) data
	$(BIN)/python -m recsys_tutorial.results run --quick

# A reading copy: every notebook executed, as HTML with figures, plus build/html/index.html. Offline.
# QUICK=1 builds it from QUICK runs (smaller sizes, same code).
html: $(STAMP) data
	$(BIN)/python -m recsys_tutorial.publish html $(if $(filter 1,$(QUICK)),--quick)

# Slide decks for class: build/slides/NN_*.html (reveal.js), one "##" section per slide; open the file, no network.
slides: $(STAMP) data
	$(BIN)/python -m recsys_tutorial.publish slides $(if $(filter 1,$(QUICK)),--quick)

# Notebook 06 as a product: refresh the top-K store with the batch pipeline, then serve the API and page on
# http://127.0.0.1:8000 (Ctrl-C stops it). MODEL is one of the pipeline's --model choices.
MODEL ?= implicit-als
serve: $(STAMP) data
	$(BIN)/python -m recsys_tutorial.serving.pipeline --model $(MODEL) --k 10
	$(BIN)/python -m recsys_tutorial.serving.api

# Apache Airflow for the nightly DAG, in its own environment: Airflow caps FastAPI below the version .venv serves the
# API with. torch is pinned as in .venv; the package is installed editable, with its airflow extra.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

$(AIRFLOW_STAMP): pyproject.toml
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -e ".[airflow]"
	touch $@

airflow: $(AIRFLOW_STAMP)

# One run of the nightly DAG with Airflow's own test runner (no scheduler needed): ingest -> train -> evaluate ->
# gate -> top-K -> publish into data/recommendations.sqlite; Airflow's files go to data/airflow.
airflow-run: $(AIRFLOW_STAMP) data
	$(AIRFLOW_VENV)/bin/python -m recsys_tutorial.serving.dag test --model $(MODEL)

readme: $(STAMP)
	$(BIN)/python -m recsys_tutorial.results readme

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) build .pytest_cache .ruff_cache
