# The serving image: the tuneops package with its `serve` extra only (FastAPI, uvicorn, the model
# and registry libraries; no Airflow, no test tools), pinned by constraints/serving.txt, running
# `python -m tuneops serve` (FastAPI + uvicorn) for <model>@champion. CUDA base for GPU nodes;
# the same image serves on CPU.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv curl \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TUNEOPS_HOME=/cache/tuneops
# The pinned closure first, so a code change does not reinstall it.
COPY constraints/serving.txt /opt/tuneops/constraints/serving.txt
RUN pip install --no-cache-dir -c /opt/tuneops/constraints/serving.txt -r /opt/tuneops/constraints/serving.txt
COPY pyproject.toml /opt/tuneops/pyproject.toml
COPY include /opt/tuneops/include
RUN pip install --no-cache-dir -c /opt/tuneops/constraints/serving.txt "/opt/tuneops[serve]" && pip check
EXPOSE 8080
HEALTHCHECK CMD curl -fs http://localhost:8080/health || exit 1
ENTRYPOINT ["python", "-m", "tuneops", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model-name", "tuneops-support-triage"]
