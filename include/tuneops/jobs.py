"""Model jobs: every step that loads model weights runs as a CLI job, on the local subprocess or a pod.

``python -m tuneops.jobs <job> --input <uri>`` reads its typed input (a contract of
``tuneops.contracts``, published in the artifact store), runs the stage function and prints its
typed summary as the last line of stdout; in a pod it also writes the summary to
``/airflow/xcom/return.json`` (the KubernetesPodOperator's XCom sidecar). Training is the same
pattern under its own module (``python -m tuneops.training.train``, which takes the plan as
arguments). The Airflow worker only publishes inputs and reads summaries: it never imports torch.

======== ============= ============= ================================================
job      input         summary       what it runs
======== ============= ============= ================================================
evaluate EvaluateJob   Evaluations   ``tuneops.stages.finetune.evaluate_models``
register RegisterJob   Registration  ``tuneops.stages.finetune.register_challenger``
compress CompressJob   VariantChoice ``tuneops.stages.deploy.choose_variant``
======== ============= ============= ================================================

An input is published under ``jobs/<job>/<content hash>``, so a retried task hands its job the same
URI and the same input is stored once. Each stage function is itself idempotent (evaluations are
content-addressed, a fingerprint is registered once, a variant report is keyed by version).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass

from pydantic import BaseModel

from tuneops.config import KubernetesCompute
from tuneops.contracts import (
    CompressJob,
    EvaluateJob,
    Evaluations,
    RegisterJob,
    Registration,
    VariantChoice,
)
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)
JOB_MODULE = "tuneops.jobs"


@dataclass(frozen=True)
class Job:
    input: type[BaseModel]
    summary: type[BaseModel]
    #: Whether its pod gets the recipe's GPUs; registration uploads files and loads no model.
    accelerated: bool = True


JOBS = {
    "evaluate": Job(EvaluateJob, Evaluations),
    "register": Job(RegisterJob, Registration, accelerated=False),
    "compress": Job(CompressJob, VariantChoice),
}


def job_spec(job: str) -> Job:
    """The input and summary contracts of ``job``; ValueError naming the known jobs otherwise."""
    if job not in JOBS:
        raise ValueError(f"unknown model job {job!r}; the jobs are {sorted(JOBS)}")
    return JOBS[job]


def parse_input(job: str, payload: BaseModel | dict):
    """``payload`` validated as ``job``'s input contract (what a task hands over as XCom dicts)."""
    return job_spec(job).input.model_validate(payload)


def publish_input(job: str, payload: BaseModel | dict, settings: Settings | None = None) -> str:
    """Validate ``payload`` as ``job``'s input, publish it under ``jobs/<job>/<hash>``; returns its URI."""
    from tuneops.core.hashing import hash_json

    data = parse_input(job, payload).model_dump(mode="json")
    store = ArtifactStore.from_settings(settings or load_settings())
    return store.write_json(f"jobs/{job}/{hash_json(data)[:24]}", data)


def read_input(job: str, uri: str, settings: Settings):
    store = ArtifactStore.from_settings(settings)
    return parse_input(job, store.read_json(store.key_of(uri)))


def pod_compute(job: str, contract) -> KubernetesCompute:
    """The pod shape of ``job`` from its input's recipe: as it says, or without GPUs (and so without
    the GPU node selector and toleration) for a job that loads no model."""
    compute = contract.kubernetes
    if job_spec(job).accelerated:
        return compute
    return compute.model_copy(update={"gpus": 0, "node_selector": {}, "tolerations": []})


def pod_env(settings: Settings | None = None) -> dict[str, str]:
    """What a job pod must share with the worker besides the credentials Secret: the artifact store
    its input and outputs live in, and the MLflow experiment."""
    settings = settings or load_settings()
    return {"TUNEOPS_ARTIFACT_ROOT": settings.artifact_root, "TUNEOPS_EXPERIMENT": settings.experiment}


def job_command(job: str, input_uri: str) -> list[str]:
    """The job's command line; the local subprocess and the pod run exactly this."""
    job_spec(job)
    return ["python", "-m", JOB_MODULE, job, "--input", input_uri]


def run_job(job: str, contract, settings: Settings) -> BaseModel:
    """Run ``job`` on its validated input in this process; returns its summary contract."""
    if job == "evaluate":
        from tuneops.stages.finetune import evaluate_models

        return evaluate_models(contract.choice.plan, contract.choice.summary, settings)
    if job == "register":
        from tuneops.stages.finetune import register_challenger

        choice = contract.choice
        return register_challenger(
            choice.plan, choice.summary, contract.evaluations, contract.decision, contract.labels, settings
        )
    from tuneops.stages.deploy import choose_variant

    return choose_variant(contract, settings)


def run_locally(job: str, payload: BaseModel | dict, on_start=None, settings: Settings | None = None) -> dict:
    """Run ``job`` as a subprocess with this interpreter, tied to this process; returns its summary (JSON).

    The subprocess dies with this process and ``on_start`` gets its ``TrainerProcess`` before it
    starts (see ``tuneops.training.process``), as for the local trainer. Raises RuntimeError when the
    job fails; its log (stderr) passes through.
    """
    from tuneops.training.process import TrainerProcess

    settings = settings or load_settings()
    uri = publish_input(job, payload, settings)
    process = TrainerProcess(
        [sys.executable, *job_command(job, uri)[1:]], env=settings.child_env(), name=f"model job {job}"
    )
    if on_start is not None:
        on_start(process)
    out = process.run().strip().splitlines()
    if not out:
        raise RuntimeError(f"model job {job} printed no summary; its log is above")
    return job_spec(job).summary.model_validate_json(out[-1]).model_dump(mode="json")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {JOB_MODULE}", description="Run one model job on its published input."
    )
    p.add_argument("job", choices=sorted(JOBS), help="the job to run")
    p.add_argument("--input", required=True, help="URI of the job's input (published by the task)")
    return p


def main(argv: list[str] | None = None) -> int:
    from tuneops.training.process import die_with_parent
    from tuneops.training.train import report_summary

    die_with_parent()  # started by a task: never outlive it
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    torch_threads = os.environ.get("TUNEOPS_TORCH_THREADS")
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    from tuneops.config import ConfigError

    settings = load_settings()
    try:
        contract = read_input(args.job, args.input, settings)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"error: the input of job {args.job} ({args.input}) cannot be read: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_job(args.job, contract, settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
