# The trainer image the KubernetesPodOperator runs: CUDA, pinned deps, the tuneops package.
# Entry point: python -m tuneops.training.train --recipe ... --dataset ... --output ... --run-id ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HOME=/cache/hf
COPY requirements.txt /opt/tuneops/requirements.txt
RUN pip install --no-cache-dir -r /opt/tuneops/requirements.txt
COPY pyproject.toml /opt/tuneops/pyproject.toml
COPY include /opt/tuneops/include
RUN pip install --no-cache-dir --no-deps /opt/tuneops
WORKDIR /work
ENTRYPOINT []
CMD ["python", "-m", "tuneops.training.train", "--help"]
