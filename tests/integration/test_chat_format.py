"""A chat-format dataset goes through the trainer and the evaluator the way an instruction one does."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEST_DATASET
from tuneops.config import EvalConfig, load_dataset_config, load_recipe, load_safety_suite, load_template
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore

pytestmark = pytest.mark.integration
FAST_RECIPE = Path(__file__).resolve().parents[1] / "data" / "recipe-fast.yaml"


def test_chat_dataset_trains_and_evaluates_on_the_reply_only(tmp_path):
    from tuneops.core.sample_data import write_sample_batch
    from tuneops.data.prompts import build_prompt_dataset
    from tuneops.data.validation import validate_batch
    from tuneops.evaluation.evaluate import ModelRef, evaluate_model
    from tuneops.training.train import train

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    config = load_dataset_config(TEST_DATASET).model_copy(update={"golden": None})
    batch = write_sample_batch(tmp_path / "chat-batch.jsonl", 200, seed=21)
    validated = validate_batch(str(batch), config, store, settings.cache_dir, [str(batch.parent)])
    dataset = build_prompt_dataset(
        [validated["key"]], config, load_template("triage_chat_v1"), store, settings.cache_dir
    )
    recipe = load_recipe(FAST_RECIPE, overrides={"train": {"max_steps": 3, "log_every": 1}})
    output = store.uri(f"candidates/chat-{dataset['version']}")
    summary = train(recipe, dataset["uri"], output, None, settings)
    assert summary.train_examples == dataset["counts"]["train"] and summary.dropped_too_long == 0

    adapter = Path(output) / "adapter"
    ref = ModelRef("candidate", f"chat-test-{summary.adapter_sha256}", summary.base_model_path, str(adapter))
    cfg = EvalConfig(max_examples=4, max_new_tokens=8, splits=["test"])
    suite = load_safety_suite("support-triage")
    result = evaluate_model(ref, store.fetch_dir(dataset["key"]), dataset["version"], cfg, suite, store)
    predictions = pd.read_parquet(Path(result["uri"]) / "test.parquet")
    assert len(predictions) == 4 and result["n"] == {"test": 4, "safety": len(suite.probes)}
    # References are the visible reply: the chat template's end-of-turn token is not text to match.
    assert all("</s>" not in r and json.loads(r)["team"] for r in predictions["reference"])
    assert all(p.endswith("<|assistant|>\n") for p in predictions["prompt"])
