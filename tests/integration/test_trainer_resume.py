"""kill -9 the trainer mid-run; the rerun resumes from its last checkpoint and ends bit-identical."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tuneops.settings import load_settings
from tuneops.store import ArtifactStore

pytestmark = pytest.mark.integration
FAST_RECIPE = Path(__file__).resolve().parents[1] / "data" / "recipe-fast.yaml"


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory):
    from tuneops.config import load_dataset_config, load_template
    from tuneops.prompts import build_prompt_dataset
    from tuneops.sample_data import write_sample_batch
    from tuneops.validation import validate_batch

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    config = load_dataset_config("support_tickets").model_copy(update={"golden": None})
    batch = write_sample_batch(tmp_path_factory.mktemp("resume") / "batch.jsonl", 160, seed=31)
    validated = validate_batch(str(batch), config, store, settings.cache_dir)
    return build_prompt_dataset(
        [validated["key"]], config, load_template(config.template), store, settings.cache_dir
    )["uri"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> str:
    spec = yaml.safe_load(FAST_RECIPE.read_text())
    spec["lora"]["dropout"] = 0.1  # dropout draws from the RNG: a resume must restore it too
    spec["train"].update({"max_steps": 30, "batch_size": 8, "checkpoint_every": 5, "log_every": 5})
    path = tmp_path_factory.mktemp("recipe") / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def trainer(recipe: str, dataset: str, output: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tuneops.train",
        "--recipe",
        recipe,
        "--dataset",
        dataset,
        "--output",
        output,
    ]


# One thread: CPU matmuls then sum in one fixed order, so two runs can be compared bit for bit.
ENV = {**os.environ, "TUNEOPS_TORCH_THREADS": "1"}


def run_to_end(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def adapter_tensors(output: str) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(output) / "adapter" / "adapter_model.safetensors")


def test_killed_trainer_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(dataset_uri, recipe):
    import torch

    from tuneops.checkpoints import list_checkpoints

    store = ArtifactStore.from_settings(load_settings())
    reference = store.uri("candidates/resume-reference")
    killed = store.uri("candidates/resume-killed")
    assert run_to_end(trainer(recipe, dataset_uri, reference))["resumed_from_step"] == 0

    proc = subprocess.Popen(
        trainer(recipe, dataset_uri, killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not any(
        int(k.rsplit("-", 1)[1]) >= 10 for k in list_checkpoints(store, "candidates/resume-killed")
    ):
        assert proc.poll() is None, "the trainer ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint at step 10 within 5 minutes"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not store.exists("candidates/resume-killed"), "a killed run must not publish an adapter"

    summary = run_to_end(trainer(recipe, dataset_uri, killed))
    assert 10 <= summary["resumed_from_step"] < 30
    ours, theirs = adapter_tensors(reference), adapter_tensors(killed)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), (
        "resumed adapter differs from the uninterrupted one"
    )
    assert list_checkpoints(store, "candidates/resume-killed") == [], (
        "checkpoints of a finished run are removed"
    )

    again = subprocess.run(trainer(recipe, dataset_uri, killed), env=ENV, capture_output=True, text=True)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["reused"] is True
