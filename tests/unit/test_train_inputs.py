"""Before any compute: bad trainer inputs fail with a message that says what to fix, and a
complete output is returned as its typed summary, not trained again."""

import json
import math
import subprocess
import sys

import pytest

from tuneops.config import load_recipe, recipe_hash
from tuneops.contracts import TrainingSummary
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.models.base_model import resolve_base_model
from tuneops.training.train import TrainingError, train, write_xcom_sidecar


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "tuneops.training.train", *args], capture_output=True, text=True
    )


def test_empty_dataset_uri_is_rejected_by_the_cli(tmp_path):
    out = _run("--recipe", "tiny-local", "--dataset", " ", "--output", str(tmp_path / "out"))
    assert out.returncode == 2 and "--dataset is empty" in out.stderr


def test_recipe_typo_fails_before_compute(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: builtin:tiny-llama\ntrain:\n  max_stpes: 3\n")
    out = _run("--recipe", str(recipe), "--dataset", str(tmp_path / "d"), "--output", str(tmp_path / "out"))
    assert out.returncode != 0 and "unknown key 'train.max_stpes'" in out.stderr


def test_a_recipe_changed_after_planning_is_refused(tmp_path):
    planned = recipe_hash(load_recipe("tiny-local"))
    args = ("--recipe", "tiny-local", "--dataset", str(tmp_path / "d"), "--output", str(tmp_path / "out"))
    out = _run(*args, "--set", "lora.r=4", "--recipe-hash", planned)
    actual = recipe_hash(load_recipe("tiny-local", {"lora": {"r": 4}}))
    assert out.returncode == 2
    assert f"recipe hash {actual}, but the run was planned with recipe hash {planned}" in out.stderr
    assert "the recipe changed after the run was planned; re-run the DAG" in out.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "locks").exists()

    # The planned hash passes the check: the trainer goes on and meets the missing dataset.
    out = _run(*args, "--recipe-hash", planned)
    assert out.returncode == 2 and "not a published prompt dataset" in out.stderr
    assert "recipe changed" not in out.stderr


def test_unpublished_dataset_is_named(tmp_path):
    with pytest.raises(TrainingError, match="not a published prompt dataset"):
        train(
            load_recipe("tiny-local"), str(tmp_path / "nothing"), str(tmp_path / "out"), None, load_settings()
        )
    assert not (tmp_path / "out").exists()


def test_missing_base_model_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_base_model(str(tmp_path / "no-such-model"), ArtifactStore(str(tmp_path)))
    with pytest.raises(ValueError, match="unknown builtin model"):
        resolve_base_model("builtin:huge-llama", ArtifactStore(str(tmp_path)))


PUBLISHED = {
    "output_uri": "OUT",
    "base_model": "builtin:tiny-llama",
    "base_model_path": "/models/tiny-llama",
    "dataset_uri": "/data/prompts/v1",
    "dataset_version": "v1",
    "recipe_hash": "0123456789ab",
    "mlflow_run_id": "run-1",
    "steps": 30,
    "stopped_early_at": None,
    "device": "cpu",
    "world_size": 1,
    "final_train_loss": 0.5,
    "eval_loss": float("nan"),  # no validation rows
    "train_examples": 120,
    "dropped_too_long": 0,
    "padding_efficiency": 0.9,
    "tokens_per_s": 900.0,
    "resumed_from_step": 0,
    "train_seconds": 12.5,
    "trainable_params": 4096,
    "peak_memory_gib": 0.4,
    "adapter_sha256": "ab" * 32,
}


def test_a_complete_output_is_returned_as_its_typed_summary_without_training(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with store.publishing("out") as folder:
        (folder / "summary.json").write_text(json.dumps({**PUBLISHED, "output_uri": store.uri("out")}))
    out = _run("--recipe", "tiny-local", "--dataset", str(tmp_path / "d"), "--output", store.uri("out"))
    assert out.returncode == 0, out.stderr
    printed = out.stdout.strip().splitlines()[-1]
    summary = TrainingSummary.model_validate_json(printed)
    assert summary.reused is True and summary.adapter_sha256 == "ab" * 32 and math.isnan(summary.eval_loss)
    assert "already complete" in out.stderr

    # Inside a pod, the XCom sidecar gets the very JSON the local backend reads from stdout.
    sidecar = tmp_path / "xcom" / "return.json"
    sidecar.parent.mkdir()
    write_xcom_sidecar(summary, sidecar)
    assert sidecar.read_text() == printed
