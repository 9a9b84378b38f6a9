"""The whole chain on a real pretrained instruct model, SmolLM2-135M-Instruct, through the real DAGs.

validate -> prompts (the model's own chat template) -> LoRA -> evaluate base / candidate -> gate ->
register -> champion; then a second candidate evaluated against that champion; then the champion
served on loopback, a reply and its feedback. The shipped recipe's gate, with fewer steps and
smaller evaluation sets so it fits the suite (docs/benchmarks.md has the runs behind the thresholds).
Marked ``real_model``: ``make test`` runs this tier after the rest.
"""

import json
from pathlib import Path

import pytest
import yaml

from scripts.demo import load_dags, run_dag, task_result
from tests.conftest import PROJECT_DIR, RECIPE_DIR

pytestmark = [pytest.mark.integration, pytest.mark.real_model]
PROJECT = "real_triage"
MODEL = "tuneops-real-triage"


def _recipe(path: Path, **train) -> str:
    """The shipped SmolLM2 recipe, with ``train`` overrides and small evaluation sets."""
    from tuneops.config import load_recipe

    recipe = load_recipe("smollm2-135m-instruct").model_dump(mode="json")
    recipe["train"].update(train)
    recipe["eval"].update(max_examples=16, batch_size=16)
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def chain():
    import subprocess
    import sys

    from tuneops.core.sample_data import write_sample_batch
    from tuneops.core.settings import load_settings

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    recipe = _recipe(RECIPE_DIR / "real-triage.yaml", max_steps=24, checkpoint_every=None)
    project = {"name": PROJECT, "dataset": "support_tickets", "recipe": recipe, "model_name": MODEL}
    (PROJECT_DIR / f"{PROJECT}.yaml").write_text(yaml.safe_dump(project))
    landing = load_settings().home / "landing" / "tests" / "real"
    landing.mkdir(parents=True, exist_ok=True)
    batch = write_sample_batch(landing / "batch-0001.jsonl", 300, seed=7)
    dags = load_dags()
    runs = {"validate": run_dag(dags, "llmops_validate_data", {"batch_uri": str(batch), "project": PROJECT})}
    runs["prompts"] = run_dag(dags, "llmops_build_prompt_dataset", {"project": PROJECT})
    runs["first"] = run_dag(dags, "llmops_finetune", {"project": PROJECT})
    # A second candidate (another seed, fewer steps) meets the champion the first one became.
    second = _recipe(RECIPE_DIR / "real-triage-seed1.yaml", max_steps=8, seed=1, checkpoint_every=None)
    runs["second"] = dags["llmops_finetune"].test(run_conf={"project": PROJECT, "recipe": second})
    return runs


def _gate(run):
    return task_result("llmops_finetune", run.run_id, "gate")


def _row(decision, metric):
    return next(r for r in decision["table"] if r["metric"] == metric)


def test_prompts_use_smollm2s_own_chat_template(chain):
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.data.prompts import load_prompt_dataset

    built = task_result("llmops_build_prompt_dataset", chain["prompts"].run_id, "build")
    store = ArtifactStore.from_settings(load_settings())
    row = load_prompt_dataset(store.fetch_dir(store.key_of(built["uri"])))["train"][0]
    assert row["prompt"].startswith("<|im_start|>system\nYou triage customer support tickets.")
    assert row["prompt"].endswith("<|im_start|>assistant\n") and row["response"].endswith("}<|im_end|>")


def test_the_real_base_scores_above_zero_and_fails_the_gate_the_candidate_passes(chain):
    from tuneops.config import load_recipe

    decision = _gate(chain["first"])
    assert decision["passed"], decision["text"]
    rules = load_recipe("smollm2-135m-instruct").gate.rules
    for metric in ("test.rougeL", "golden.rougeL"):
        row = _row(decision, metric)
        assert 0.0 < row["base"] < rules[metric].min_value, decision["text"]  # a real base, below the floor
        assert row["candidate"] >= rules[metric].min_value + 0.1, decision["text"]  # passed with margin
    assert _row(decision, "test.rougeL")["delta_vs_base"] >= 0.3, decision["text"]
    assert _row(decision, "test.format_valid")["candidate"] >= 0.9, decision["text"]
    promoted = task_result("llmops_finetune", chain["first"].run_id, "promote")
    assert promoted and promoted["version"] == "1"


def test_the_second_candidate_is_measured_against_the_champion(chain):
    decision = _gate(chain["second"])
    assert decision["champion_version"] == "1"
    first = _row(_gate(chain["first"]), "test.rougeL")
    row = _row(decision, "test.rougeL")
    assert row["champion"] == pytest.approx(first["candidate"])  # the same model, the same examples
    assert row["base"] == pytest.approx(first["base"])
    assert any(c["rule"] == "max_regression_vs_champion" for c in decision["checks"]), decision["text"]


def test_the_served_champion_answers_in_the_task_format_and_takes_feedback(chain):
    import httpx

    from tuneops.serving.app import ServerThread, ServingConfig, create_app

    app = create_app(ServingConfig(model_name=MODEL, log_flush_seconds=0.2))
    ticket = {
        "subject": "Charged twice",
        "input": "Hi, I was charged twice for my Acme Mail subscription this month. Please refund one.",
    }
    with ServerThread(app) as url:
        served = httpx.post(f"{url}/generate", json={"inputs": ticket, "max_new_tokens": 32}, timeout=120)
        assert served.status_code == 200, served.text
        reply = served.json()
        assert reply["version"] == "1"
        triage = json.loads(reply["text"])
        assert set(triage) == {"category", "priority", "team"} and triage["category"] == "billing", triage
        correction = json.dumps({"category": "billing", "priority": "high", "team": "payments"})
        feedback = httpx.post(
            f"{url}/feedback",
            json={"request_id": reply["request_id"], "rating": "down", "correction": correction},
            timeout=60,
        )
        assert feedback.status_code == 200, feedback.text
        assert feedback.json()["feedback_id"]
