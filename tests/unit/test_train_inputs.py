"""Bad trainer inputs fail before any compute, with a message that says what to fix."""

import subprocess
import sys

import pytest

from tuneops.config import load_recipe
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.models.base_model import resolve_base_model
from tuneops.training.train import TrainingError, train


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
