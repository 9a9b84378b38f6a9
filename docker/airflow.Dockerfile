# Airflow image with the tuneops library and its pinned dependencies.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/tuneops/requirements.txt
RUN pip install --no-cache-dir -r /opt/tuneops/requirements.txt \
      --extra-index-url https://download.pytorch.org/whl/cpu
COPY --chown=airflow:root pyproject.toml /opt/tuneops/pyproject.toml
COPY --chown=airflow:root include /opt/tuneops/include
RUN pip install --no-cache-dir --no-deps -e /opt/tuneops
# Baked DAGs and plugins (the Helm values' default); compose mounts the working tree over them.
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
