# The serving image: the tuneops package and its pinned dependencies, running
# `python -m tuneops serve` (FastAPI + uvicorn) for <model>@champion. CUDA base for GPU nodes;
# the same image serves on CPU.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv curl \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TUNEOPS_HOME=/cache/tuneops
COPY requirements.txt /opt/tuneops/requirements.txt
RUN pip install --no-cache-dir -r /opt/tuneops/requirements.txt
COPY pyproject.toml /opt/tuneops/pyproject.toml
COPY include /opt/tuneops/include
RUN pip install --no-cache-dir --no-deps /opt/tuneops
EXPOSE 8080
HEALTHCHECK CMD curl -fs http://localhost:8080/health || exit 1
ENTRYPOINT ["python", "-m", "tuneops", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model-name", "tuneops-support-triage"]
