"""The trainer on a real dataset and base model: resume after kill -9, early stopping, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TEST_DATASET
from tests.support.plans import make_plan
from tests.support.processes import children, wait_gone
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore

pytestmark = pytest.mark.integration
FAST_RECIPE = Path(__file__).resolve().parents[1] / "data" / "recipe-fast.yaml"


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory):
    from tuneops.config import load_dataset_config, load_template
    from tuneops.core.sample_data import write_sample_batch
    from tuneops.data.prompts import build_prompt_dataset
    from tuneops.data.validation import validate_batch

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    config = load_dataset_config(TEST_DATASET).model_copy(update={"golden": None})
    batch = write_sample_batch(tmp_path_factory.mktemp("resume") / "batch.jsonl", 160, seed=31)
    validated = validate_batch(str(batch), config, store, settings.cache_dir, [str(batch.parent)])
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
        "tuneops.training.train",
        "--recipe",
        recipe,
        "--dataset",
        dataset,
        "--output",
        output,
    ]


# One thread: CPU matmuls then sum in one fixed order, so two runs can be compared bit for bit.
# A short output lease: a killed trainer's lapses within seconds, so its rerun need not wait long.
ENV = {**os.environ, "TUNEOPS_TORCH_THREADS": "1", "TUNEOPS_TRAIN_LEASE_SECONDS": "6"}


def run_to_end(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def adapter_tensors(output: str) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(output) / "adapter" / "adapter_model.safetensors")


def test_killed_trainer_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(dataset_uri, recipe):
    import torch

    from tuneops.training.checkpoints import list_checkpoints

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
    assert 0.1 < summary["peak_memory_gib"] < 8 and summary["tokens_per_s"] > 0
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


# What a worker's task process does for `train_local`: the operator, which starts the trainer.
TASK = """
import json, sys
from tuneops.airflow.trainer_local import LocalTrainerOperator
print(json.dumps(LocalTrainerOperator(task_id="train_local", plan=json.loads(sys.argv[1])).execute({})))
"""


def test_a_task_killed_with_sigkill_takes_its_trainer_along_and_the_retry_resumes(dataset_uri, recipe):
    """The local backend's trainer dies with its task; the retry resumes from the last complete
    checkpoint and clears the staging folders the killed run left, and no second trainer writes
    the output while one holds its lease."""
    import mlflow

    from tuneops.core.tracking import configure_mlflow
    from tuneops.training.checkpoints import list_checkpoints
    from tuneops.training.train import output_lease

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    experiment = configure_mlflow(settings)
    run_id = mlflow.MlflowClient().create_run(experiment, run_name="task-kill").info.run_id
    output = store.uri("candidates/task-killed")
    # The plan carries the recipe's hash: the trainer refuses to start if the recipe now hashes otherwise.
    plan = make_plan(recipe, dataset_uri=dataset_uri, output_uri=output, mlflow_run_id=run_id)
    plan = plan.model_dump(mode="json")
    task = subprocess.Popen(
        [sys.executable, "-c", TASK, json.dumps(plan)], env=ENV, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not any(int(k.rsplit("-", 1)[1]) >= 10 for k in list_checkpoints(store, "candidates/task-killed")):
        assert task.poll() is None, "the task ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint at step 10 within 5 minutes"
        time.sleep(0.05)
    (trainer_pid,) = children(task.pid)
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    assert wait_gone([trainer_pid]) == [], "the trainer outlived its killed task"
    assert not store.exists("candidates/task-killed")

    # What a kill mid-checkpoint leaves: a staging folder named after the output (another output's stays).
    staging = store.local_root / "candidates" / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "task-killed.checkpoints__step-00000015.deadbeef").mkdir()
    (staging / "task-killed.checkpoints__step-00000015.deadbeef" / "adapter.safetensors").write_bytes(
        b"\0" * 1024
    )
    (staging / "task-killed-other.1234").mkdir()

    # While a trainer holds the output's lease, a second one refuses to start.
    with output_lease(output, settings):
        second = subprocess.run(
            trainer(recipe, dataset_uri, output),
            env={**ENV, "TUNEOPS_TRAIN_LEASE_SECONDS": "1"},
            capture_output=True,
            text=True,
        )
    assert second.returncode == 2 and "is still held by 'trainer pid" in second.stderr

    retry = subprocess.run(
        [sys.executable, "-c", TASK, json.dumps(plan)], env=ENV, capture_output=True, text=True
    )
    assert retry.returncode == 0, retry.stderr[-3000:]
    summary = json.loads(retry.stdout.strip().splitlines()[-1])
    assert 10 <= summary["resumed_from_step"] < 30 and store.exists("candidates/task-killed")
    assert sorted(p.name for p in staging.iterdir()) == ["task-killed-other.1234"]
    assert "left by a trainer that was killed mid-write" in retry.stderr
    assert store.list_objects("candidates/locks") == [], "the lease is released"


def quick(recipe_path: str, **train) -> "object":
    from tuneops.config import load_recipe

    return load_recipe(recipe_path, overrides={"train": {"checkpoint_every": None, "log_every": 1, **train}})


def test_early_stopping_stops_when_validation_loss_stops_improving(dataset_uri, recipe):
    from tuneops.training.train import train

    store = ArtifactStore.from_settings(load_settings())
    # A learning rate this small leaves the validation loss where it was: no improvement.
    r = quick(recipe, max_steps=20, learning_rate=1e-12, eval_every=2, early_stopping_patience=2)
    summary = train(r, dataset_uri, store.uri("candidates/early-stop"), None, load_settings())
    assert summary.stopped_early_at == 6 and summary.steps == 6 and summary.reused is False
    assert store.exists("candidates/early-stop")


def test_gradient_checkpointing_trains_the_same_adapter(dataset_uri, recipe):
    import torch

    from tuneops.training.train import train

    store = ArtifactStore.from_settings(load_settings())
    for name, checkpointing in (("gc-off", False), ("gc-on", True)):
        train(
            quick(recipe, max_steps=3, gradient_checkpointing=checkpointing),
            dataset_uri,
            store.uri(f"candidates/{name}"),
            None,
            load_settings(),
        )
    off, on = adapter_tensors(store.uri("candidates/gc-off")), adapter_tensors(store.uri("candidates/gc-on"))
    assert all(torch.allclose(off[k], on[k], atol=1e-6) for k in off)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"learning_rate": 1e9},
            r"loss became (nan|inf) at step \d+; lower train.learning_rate. No adapter was published.",
        ),
        (
            {"max_seq_len": 16},
            r"no training rows within max_seq_len=16 \(121 dropped as too long\); raise train.max_seq_len",
        ),
        ({"precision": "bf16"}, r"train.precision is bf16 but there is no GPU with bf16 here"),
    ],
    ids=["nan-loss", "zero-training-rows", "bf16-without-gpu"],
)
def test_bad_training_input_fails_with_the_fix_and_publishes_nothing(dataset_uri, recipe, overrides, message):
    from tuneops.training.train import TrainingError, train

    store = ArtifactStore.from_settings(load_settings())
    key = f"candidates/bad-{'-'.join(overrides)}"
    with pytest.raises(TrainingError, match=message):
        train(quick(recipe, max_steps=30, **overrides), dataset_uri, store.uri(key), None, load_settings())
    assert not store.exists(key)


def test_qlora_without_a_gpu_says_what_to_change(dataset_uri, recipe):
    from tuneops.config import load_recipe
    from tuneops.training.train import TrainingError, train

    store = ArtifactStore.from_settings(load_settings())
    r = load_recipe(recipe, overrides={"lora": {"quantize_4bit": True}})
    with pytest.raises(
        TrainingError, match="quantize_4bit \\(QLoRA\\) needs a CUDA GPU.*set lora.quantize_4bit: false"
    ):
        train(r, dataset_uri, store.uri("candidates/qlora"), None, load_settings())


def test_cuda_out_of_memory_becomes_advice(dataset_uri, recipe, monkeypatch):
    """No GPU here, so the allocator's error is raised where a batch is built, as a GPU would raise it."""
    import torch

    import tuneops.training.train as trainer

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "collate", out_of_memory)
    store = ArtifactStore.from_settings(load_settings())
    with pytest.raises(
        trainer.TrainingError,
        match="out of GPU memory at step 1 with train.batch_size=8 .*gradient_checkpointing",
    ):
        trainer.train(
            quick(recipe, max_steps=3), dataset_uri, store.uri("candidates/oom"), None, load_settings()
        )
    assert not store.exists("candidates/oom")


def test_two_processes_with_ddp_train_one_adapter_equal_to_gradient_accumulation(
    dataset_uri, recipe, tmp_path
):
    """torchrun --nproc_per_node=2 on CPU (gloo): each rank takes every other micro-batch and
    DDP averages the gradients, which is what one process does with grad_accum=2."""
    import torch

    spec = yaml.safe_load(Path(recipe).read_text())
    spec["lora"]["dropout"] = 0.0  # the ranks' dropout draws differ from one process's
    spec["train"].update({"max_steps": 6, "checkpoint_every": 3})
    ddp_recipe, accum_recipe = tmp_path / "ddp.yaml", tmp_path / "accum.yaml"
    ddp_recipe.write_text(yaml.safe_dump(spec))
    spec["train"]["grad_accum"] = 2
    accum_recipe.write_text(yaml.safe_dump(spec))
    store = ArtifactStore.from_settings(load_settings())
    ddp_out, accum_out = store.uri("candidates/ddp-2"), store.uri("candidates/accum-2")

    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, "-m", "tuneops.training.train", *trainer(str(ddp_recipe), dataset_uri, ddp_out)[3:]],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1, "rank 0 alone reports"
    summary = json.loads(reports[0])
    assert summary["world_size"] == 2 and summary["steps"] == 6 and summary["mlflow_run_id"]
    assert store.list_keys("candidates/ddp-2.checkpoints") == []

    assert run_to_end(trainer(str(accum_recipe), dataset_uri, accum_out))["world_size"] == 1
    ddp, accum = adapter_tensors(ddp_out), adapter_tensors(accum_out)
    assert ddp.keys() == accum.keys()
    assert all(torch.allclose(ddp[k], accum[k], atol=1e-5) for k in ddp)
