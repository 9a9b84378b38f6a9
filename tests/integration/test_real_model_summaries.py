"""Quality on a task the project is not about: SmolLM2 fine-tuned on dialogue summaries.

The project generates a SAMSum-like batch (short chats between two people, a one-sentence
summary; ``tuneops.core.sample_data.generate_dialogue_summaries``), lands it, and a user's path
runs as subprocesses: ``tuneops init-dataset`` (the default base model, so the prompts use its
chat template), ``validate``, ``build-prompts``, ``finetune`` with a short run. The candidate's
test ROUGE-L must beat the base model's by a measured margin (docs/benchmarks.md has the runs).
"""

import json

import pytest

from tests.support.cli import json_with, tuneops

pytestmark = [pytest.mark.integration, pytest.mark.real_model]
NAME = "dialogue_summaries"
#: The least improvement in test ROUGE-L over the base accepted here: the measured run went from
#: 0.20 to 0.95 (docs/benchmarks.md), so this holds with room for run-to-run variation.
MIN_GAIN = 0.5


@pytest.fixture(scope="module")
def finetuned():
    from tuneops.core.sample_data import generate_dialogue_summaries
    from tuneops.core.settings import load_settings

    folder = load_settings().home / "landing" / "summaries"
    folder.mkdir(parents=True, exist_ok=True)
    sample = folder / "dialogues.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in generate_dialogue_summaries(320, seed=11)))
    init = tuneops("init-dataset", str(sample), "--name", NAME)
    validated = json_with(tuneops("validate", "--batch", str(sample), "--project", NAME), "uri")
    built = json_with(tuneops("build-prompts", "--validated", validated["uri"], "--project", NAME), "uri")
    result = tuneops(
        "finetune",
        "--dataset-uri",
        built["uri"],
        "--project",
        NAME,
        *("--set", "train.max_steps=20", "--set", "train.checkpoint_every=null"),
        *("--set", "eval.max_examples=24", "--set", "eval.batch_size=24"),
        ok=(0, 1),
    )
    return {"init": init, "built": built, "result": json_with(result, "decision")}


def test_init_dataset_picks_the_models_chat_template_for_an_instruct_model(finetuned):
    from tuneops.config import load_dataset_config
    from tuneops.core.settings import load_settings

    config = load_dataset_config(load_settings().home / "configs" / "datasets" / f"{NAME}.yaml")
    assert config.template == "generic_chat_v1" and config.tokenizer == "builtin:smollm2-135m-instruct"
    assert config.columns.input == "dialogue" and config.columns.response == "summary"


def test_fine_tuning_improves_rouge_l_on_summaries_over_the_base(finetuned):
    decision = finetuned["result"]["decision"]
    row = next(r for r in decision["table"] if r["metric"] == "test.rougeL")
    assert row["base"] > 0.05, decision["text"]  # the instruct model summarizes a little already
    assert row["candidate"] - row["base"] >= MIN_GAIN, decision["text"]
    rouge_rules = [c for c in decision["checks"] if c["metric"] == "test.rougeL"]
    assert rouge_rules and all(c["passed"] for c in rouge_rules), decision["text"]
