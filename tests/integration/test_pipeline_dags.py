"""The whole chain through the real DAGs with dag.test(): raw batch -> champion in the registry.

Runs on a small slice of the sample data with a short recipe (tests/data/recipe-fast.yaml),
on the session's own SQLite Airflow DB, artifact folder and MLflow database.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo import load_dags, run_dag, task_result

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FAST_RECIPE = str(REPO / "tests" / "data" / "recipe-fast.yaml")
MODEL = "tuneops-test-triage"


@pytest.fixture(scope="module")
def dags():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return load_dags()


@pytest.fixture(scope="module")
def chain(dags, tmp_path_factory):
    from tuneops.sample_data import write_sample_batch

    batch = write_sample_batch(tmp_path_factory.mktemp("landing") / "batch-0001.jsonl", 400, seed=0)
    validate = run_dag(dags, "llmops_validate_data", {"batch_uri": str(batch)})
    prompts = run_dag(dags, "llmops_build_prompt_dataset")  # input from the asset event
    finetune = run_dag(dags, "llmops_finetune", {"recipe": FAST_RECIPE})
    return {"validate": validate, "prompts": prompts, "finetune": finetune}


def test_each_dag_hands_its_output_to_the_next_through_assets(chain):
    validated = task_result("llmops_validate_data", chain["validate"].run_id, "validate")
    dataset = task_result("llmops_build_prompt_dataset", chain["prompts"].run_id, "build")
    plan = task_result("llmops_finetune", chain["finetune"].run_id, "plan_training")
    assert validated["rows"] == 400
    assert dataset["uri"].startswith(os.environ["TUNEOPS_HOME"]) and f"/{dataset['version']}" in dataset["uri"]
    assert plan["dataset_uri"] == dataset["uri"]


def test_candidate_beats_base_and_becomes_champion_with_lineage(chain):
    from mlflow import MlflowClient

    run_id = chain["finetune"].run_id
    decision = task_result("llmops_finetune", run_id, "gate")
    assert decision["passed"], decision["text"]
    gated = next(r for r in decision["table"] if r["gated"])
    assert gated["candidate"] >= gated["base"] + 0.2
    plan = task_result("llmops_finetune", run_id, "plan_training")
    version = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == plan["mlflow_run_id"]
    assert version.tags["tuneops.dataset_version"] == plan["dataset_version"]
    assert version.tags["tuneops.dag_run_id"] == run_id
    assert version.tags["tuneops.template_id"] == "triage_v1"
    assert len(version.tags["tuneops.git_commit"]) in (40, len("unknown"))
    assert {"tuneops.recipe_hash", "tuneops.base_model", "tuneops.gate.rougeL"} <= set(version.tags)


def test_champion_generates_text_in_a_fresh_process(chain):
    code = (
        "import json, mlflow\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        "out = model.predict([{'subject': 'Card declined', 'input': 'Hi, this is Sam. My card was charged twice.'}])\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (reply,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(reply, str) and reply.strip()


def test_rerun_reuses_everything_and_registers_no_duplicate(dags, chain):
    from mlflow import MlflowClient

    again = run_dag(dags, "llmops_finetune", {"recipe": FAST_RECIPE})
    summary = task_result("llmops_finetune", again.run_id, "select_trial")["summary"]
    registered = task_result("llmops_finetune", again.run_id, "register_and_promote")
    assert summary["reused"] is True
    assert registered["reused"] is True and registered["version"] == "1"
    assert [str(v.version) for v in MlflowClient().search_model_versions(f"name = '{MODEL}'")] == ["1"]


def test_rejected_batch_fails_the_run_and_publishes_nothing(dags, tmp_path):
    from tuneops.sample_data import generate_tickets
    from tuneops.settings import load_settings
    from tuneops.store import ArtifactStore

    records = generate_tickets(40, seed=9)
    for r in records[:3]:
        r["triage"] = "???"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = ArtifactStore.from_settings(load_settings())
    before = store.list_keys("validated/support_tickets")
    run = dags["llmops_validate_data"].test(run_conf={"batch_uri": str(bad)})
    assert run.state == "failed"
    assert store.list_keys("validated/support_tickets") == before


def test_generate_then_monitor_counts_the_requests(dags, chain):
    subprocess.run(
        [sys.executable, "-m", "tuneops", "generate", "--model", MODEL, "--subject", "Locked out", "--body", "I cannot log in."],
        check=True,
        capture_output=True,
    )
    run = run_dag(dags, "llmops_monitor")
    stats = task_result("llmops_monitor", run.run_id, "inference_stats")
    assert stats["requests"] >= 1 and stats["versions"] == ["1"]


def test_a_dag_runs_alone_with_the_airflow_cli(dags, tmp_path):
    """`airflow dags test <dag_id> -c '<json conf>'`, as the README documents it."""
    from tuneops.sample_data import write_sample_batch

    batch = write_sample_batch(tmp_path / "cli-batch.jsonl", 60, seed=11)
    conf = json.dumps({"batch_uri": str(batch)})
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "llmops_validate_data", "-c", conf],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "validated 60 rows" in proc.stdout + proc.stderr


def test_every_run_is_in_the_project_experiment_not_mlflows_default(chain, dags):
    """A run in MLflow's Default experiment would drop its artifacts into ./mlruns of the worker's cwd."""
    import mlflow

    run_dag(dags, "llmops_monitor")
    assert mlflow.search_runs(experiment_ids=["0"], output_format="list") == []
    assert mlflow.search_runs(experiment_names=["tuneops"], filter_string="tags.`tuneops.kind` = 'validation'", output_format="list")


def test_training_run_carries_the_exact_dataset_version_as_mlflow_inputs(chain):
    from mlflow import MlflowClient

    dataset = task_result("llmops_build_prompt_dataset", chain["prompts"].run_id, "build")
    plan = task_result("llmops_finetune", chain["finetune"].run_id, "plan_training")

    def inputs(run_id: str) -> dict[str, tuple]:
        found = {}
        for item in MlflowClient().get_run(run_id).inputs.dataset_inputs:
            tags = {t.key: t.value for t in item.tags}
            found[item.dataset.name] = (item.dataset.digest, tags["mlflow.data.context"], tags["tuneops.template_hash"])
        return found

    version, template = dataset["version"], dataset["template_hash"]
    assert inputs(plan["mlflow_run_id"]) == {
        f"support_tickets@{version}/train": (version, "training", template),
        f"support_tickets@{version}/validation": (version, "validation", template),
        f"support_tickets@{version}/test": (version, "evaluation", template),
    }
    built = inputs(dataset["mlflow_run_id"])
    assert set(built) == {f"support_tickets@{version}/{s}" for s in ("train", "validation", "test", "golden")}
    assert dataset["counts"]["golden"] == 32


def test_a_sweep_trains_each_trial_as_a_child_run_and_the_lowest_validation_loss_wins(dags, chain):
    from mlflow import MlflowClient

    sweep = [
        {"train.max_steps": 20, "train.learning_rate": 1e-6},  # barely moves: the worse trial
        {"train.max_steps": 20, "train.learning_rate": 0.003},
    ]
    run = run_dag(dags, "llmops_finetune", {"recipe": FAST_RECIPE, "sweep": sweep})
    plan = task_result("llmops_finetune", run.run_id, "plan_training")
    best = task_result("llmops_finetune", run.run_id, "select_trial")
    assert [row["trial"] for row in best["table"]] == [0, 1]
    assert best["plan"]["trial"] == 1 and best["table"][1]["eval_loss"] < best["table"][0]["eval_loss"]
    assert all(row["gpu_hours"] == 0 and row["tokens_per_s"] > 0 for row in best["table"])
    client = MlflowClient()
    children = [client.get_run(t["mlflow_run_id"]) for t in (best["plan"],)]
    assert children[0].data.tags["mlflow.parentRunId"] == plan["mlflow_run_id"]
    assert children[0].data.params["recipe.train.learning_rate"] == "0.003"
    assert client.get_run(plan["mlflow_run_id"]).data.tags["tuneops.sweep_winner"] == "1"
    evaluations = task_result("llmops_finetune", run.run_id, "evaluate")
    assert evaluations["candidate"]["n"] == 24
