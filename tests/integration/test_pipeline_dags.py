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
from tests.conftest import PROJECT_DIR, RECIPE_DIR, TEST_DATASET
from tests.support.dag_process import run_dag_in_fresh_process

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FAST_RECIPE = str(REPO / "tests" / "data" / "recipe-fast.yaml")
MONITOR_CONFIG = str(REPO / "tests" / "data" / "monitor-test.yaml")
MODEL = "tuneops-test-triage"


@pytest.fixture(scope="module")
def dags():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return load_dags()


def _task_state(dag_id: str, run_id: str, task_id: str) -> str:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )


def _landing(name: str) -> Path:
    """A folder in the deployment's landing root (``<TUNEOPS_HOME>/landing``), where batches must land."""
    from tuneops.core.settings import load_settings

    folder = load_settings().home / "landing" / "tests" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chain(dags):
    from tuneops.core.sample_data import write_sample_batch

    batch = write_sample_batch(_landing("chain") / "batch-0001.jsonl", 400, seed=0)
    validate = run_dag(dags, "llmops_validate_data", {"batch_uri": str(batch), "project": "support_tickets"})
    prompts = run_dag(dags, "llmops_build_prompt_dataset")  # input from the asset event
    # In a fresh process, so the imports of its tasks can be checked: no task loads weights.
    finetune = run_dag_in_fresh_process("llmops_finetune", {"recipe": FAST_RECIPE})
    assert finetune.state == "success"
    return {"validate": validate, "prompts": prompts, "finetune": finetune}


def test_training_evaluation_and_registration_run_as_jobs_and_no_task_loads_weights(chain):
    """The finetune run's own process (every task, as dag.test() runs them) never imported torch,
    transformers or peft: the trainer and the evaluate and register jobs did, as subprocesses."""
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.jobs import parse_input

    assert chain["finetune"].model_modules == []
    run_id = chain["finetune"].run_id
    plan = task_result("llmops_finetune", run_id, "plan_training")
    store = ArtifactStore.from_settings(load_settings())
    published = {
        job: [parse_input(job, store.read_json(key)) for key in store.list_keys(f"jobs/{job}")]
        for job in ("evaluate", "register")
    }
    ours = {
        job: [i for i in found if i.choice.plan.mlflow_run_id == plan["mlflow_run_id"]]
        for job, found in published.items()
    }
    assert len(ours["evaluate"]) == 1 and len(ours["register"]) == 1, (
        "each job read an input published for it"
    )
    assert ours["register"][0].labels == {"dag_id": "llmops_finetune", "dag_run_id": run_id}
    evaluations = task_result("llmops_finetune", run_id, "evaluate")
    assert {"base", "candidate"} <= set(evaluations)  # the job's typed summary is the task's XCom
    registered = task_result("llmops_finetune", run_id, "register_challenger")
    assert (registered["name"], registered["version"]) == (MODEL, "1")


def test_each_dag_hands_its_output_to_the_next_through_assets(chain):
    validated = task_result("llmops_validate_data", chain["validate"].run_id, "validate")
    dataset = task_result("llmops_build_prompt_dataset", chain["prompts"].run_id, "build")
    plan = task_result("llmops_finetune", chain["finetune"].run_id, "plan_training")
    assert validated["rows"] == 400
    assert (
        dataset["uri"].startswith(os.environ["TUNEOPS_HOME"]) and f"/{dataset['version']}" in dataset["uri"]
    )
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
    assert {
        "tuneops.recipe_hash",
        "tuneops.base_model",
        "tuneops.gate.test.rougeL",
        "tuneops.dataset_digest",
    } <= set(version.tags)


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
    registered = task_result("llmops_finetune", again.run_id, "register_challenger")
    promoted = task_result("llmops_finetune", again.run_id, "promote")
    assert summary["reused"] is True
    assert registered["reused"] is True and registered["version"] == "1"
    assert promoted == {"name": MODEL, "version": "1", "previous": None, "changed": False}
    assert [str(v.version) for v in MlflowClient().search_model_versions(f"name = '{MODEL}'")] == ["1"]


def test_gate_report_and_model_card_are_logged_for_the_champion(chain):
    import mlflow
    from mlflow import MlflowClient

    run_id = chain["finetune"].run_id
    decision = task_result("llmops_finetune", run_id, "gate")
    plan = task_result("llmops_finetune", run_id, "plan_training")
    metrics = {row["metric"] for row in decision["table"]}
    assert {
        "test.rougeL",
        "golden.rougeL",
        "test.bleu",
        "test.perplexity",
        "test.format_valid",
        "safety.pass_rate",
    } <= metrics
    report = Path(decision["report_uri"]).read_text()
    assert "Gate PASSED" in report and "safety.pass_rate" in report and "data:image/png;base64," in report
    logged = {a.path for a in MlflowClient().list_artifacts(plan["mlflow_run_id"], "gate")}
    assert logged == {"gate/decision.json", "gate/report.html"}
    version = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert version.description.startswith(f"# {MODEL}: model card")
    assert "## Safety" in version.description and plan["dataset_version"] in version.description
    card = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version.version}/artifacts/model_card.md")
    )
    assert card.read_text() == version.description
    assert version.tags["tuneops.approved_by"] == "auto_approve (recipe)"


def test_worse_candidate_is_rejected_with_the_deciding_rule_named(dags, chain, tmp_path):
    import yaml
    from mlflow import MlflowClient

    recipe = yaml.safe_load(Path(FAST_RECIPE).read_text())
    recipe["train"]["max_steps"] = 3  # barely trained: far below the champion
    worse = RECIPE_DIR / "recipe-worse.yaml"  # a Param may name recipes in TUNEOPS_RECIPE_DIRS only
    worse.write_text(yaml.safe_dump(recipe))
    before = str(MlflowClient().get_model_version_by_alias(MODEL, "champion").version)

    run = dags["llmops_finetune"].test(run_conf={"recipe": str(worse)})

    # The verdict is where users look: the run is red, and the verdict task says why.
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["verdict"] == "failed" and states["gate"] == "success", states
    assert [t for t, state in states.items() if state == "failed"] == ["verdict"], states
    decision = task_result("llmops_finetune", run.run_id, "gate")
    assert not decision["passed"]
    failed = [c for c in decision["checks"] if not c["passed"]]
    assert decision["deciding_rule"] == failed[0]["message"]
    assert failed[0]["metric"] in ("test.rougeL", "golden.rougeL"), decision["text"]
    assert any(c["rule"] == "max_regression_vs_champion" for c in failed), decision["text"]
    assert decision["champion_version"] == before
    assert task_result("llmops_finetune", run.run_id, "register_challenger") is None
    assert str(MlflowClient().get_model_version_by_alias(MODEL, "champion").version) == before
    assert len(MlflowClient().search_model_versions(f"name = '{MODEL}'")) == 1


def test_a_reviewer_rejects_then_approves_the_challenger_through_the_rest_api(chain, tmp_path):
    """Under the real scheduler, `approve` waits in Required actions; the reviewer's answer and reason
    come through the HITL REST API, as the UI sends them."""
    import yaml
    from mlflow import MlflowClient

    from tests.integration.airflow_stack import AirflowStack

    name = "tuneops-approval-triage"
    recipe = yaml.safe_load(Path(FAST_RECIPE).read_text())
    recipe["registry"] = {
        "model_name": name,
        "auto_approve": False,
    }  # same weights as the chain's: no retraining
    path = RECIPE_DIR / "recipe-approval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    # The registered model's name is the project's: a second project on the same dataset, named in
    # the run's conf, registers the reviewed model (and is gone after the test).
    project = PROJECT_DIR / "approval.yaml"
    project.write_text(
        yaml.safe_dump(
            {"name": "approval", "dataset": str(TEST_DATASET), "recipe": str(path), "model_name": name}
        )
    )
    dataset_uri = task_result("llmops_finetune", chain["finetune"].run_id, "plan_training")["dataset_uri"]
    stack = AirflowStack(tmp_path, share_artifacts=True)
    stack.start_with(parsed=("llmops_finetune",), unpause=("llmops_finetune",))
    try:
        for answer, reason in (("Reject", "wants a second look at refunds"), ("Approve", "report reviewed")):
            conf = {"project": "approval", "dataset_uri": dataset_uri}
            run_id = stack.call(
                "POST", "/dags/llmops_finetune/dagRuns", json={"logical_date": None, "conf": conf}
            )["dag_run_id"]
            approve = f"/dags/llmops_finetune/dagRuns/{run_id}/taskInstances/approve"
            stack.wait_for(
                "approve to wait for a reviewer", lambda a=approve: _state(stack, a) == "awaiting_input", 600
            )
            answered = {"chosen_options": [answer], "params_input": {"reason": reason}}
            finished = stack.wait_for(
                "the answered run to finish", lambda r=run_id, a=answered: _answer(stack, r, a), 600
            )
            assert finished == "success", stack.log_tails()
            version = MlflowClient().get_model_version(name, "1")
            if answer == "Reject":
                assert version.tags["tuneops.rejected_by"] == "admin"
                assert version.tags["tuneops.rejection_reason"] == reason
                assert _aliases(name) == {}
                assert (
                    _state(stack, f"/dags/llmops_finetune/dagRuns/{run_id}/taskInstances/promote")
                    == "skipped"
                )
            else:
                assert (version.tags["tuneops.approved_by"], version.tags["tuneops.approval_reason"]) == (
                    "admin",
                    reason,
                )
                assert _aliases(name) == {"champion": "1"}
    finally:
        stack.stop()
        project.unlink()


def _answer(stack, run_id: str, answered: dict) -> str | None:
    """Answer the open approval request; the run's final state once it has one.

    Answers again if the request is open again: Airflow 3.3 can restart a resuming HITL task from
    ``execute`` (its first ``/run`` call got 409), which writes a fresh, unanswered request.
    """
    approve = f"/dags/llmops_finetune/dagRuns/{run_id}/taskInstances/approve"
    if _state(stack, approve) == "awaiting_input" and not stack.call("GET", f"{approve}/-1/hitlDetails").get(
        "response_received"
    ):
        stack.call("PATCH", f"{approve}/-1/hitlDetails", json=answered)
    return _finished(stack, run_id)


def _state(stack, ti_path: str) -> str | None:
    return stack.call("GET", ti_path)["state"]


def _finished(stack, run_id: str) -> str | None:
    state = stack.call("GET", f"/dags/llmops_finetune/dagRuns/{run_id}")["state"]
    return state if state in ("success", "failed") else None


def test_rejected_batch_fails_the_run_and_publishes_nothing(dags, tmp_path):
    from tuneops.core.sample_data import generate_tickets
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore

    records = generate_tickets(40, seed=9)
    for r in records[:3]:
        r["triage"] = "???"
    bad = _landing("rejected") / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = ArtifactStore.from_settings(load_settings())
    before = store.list_keys("validated/support_tickets")
    quarantined = store.list_keys("quarantine/support_tickets")
    run = dags["llmops_validate_data"].test(run_conf={"batch_uri": str(bad), "project": "support_tickets"})
    assert run.state == "failed"
    assert store.list_keys("validated/support_tickets") == before
    assert len(store.list_keys("quarantine/support_tickets")) == len(quarantined) + 1 and not bad.exists()
    # The same batch outside every landing root: refused before it is read, and left alone.
    outside = tmp_path / "bad.jsonl"
    outside.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = dags["llmops_validate_data"].test(
        run_conf={"batch_uri": str(outside), "project": "support_tickets"}
    )
    assert run.state == "failed" and outside.read_text().count("\n") == len(records)
    assert len(store.list_keys("quarantine/support_tickets")) == len(quarantined) + 1


def test_generate_then_monitor_counts_the_requests(dags, chain):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneops",
            "generate",
            "--model",
            MODEL,
            "--subject",
            "Locked out",
            "--body",
            "I cannot log in.",
        ],
        check=True,
        capture_output=True,
    )
    run = run_dag(dags, "llmops_monitor", {"config": MONITOR_CONFIG})
    result = task_result("llmops_monitor", run.run_id, "assess")
    assert result["requests"] >= 1 and result["version"] == "1"


def test_a_dag_runs_alone_with_the_airflow_cli(dags, tmp_path):
    """`airflow dags test <dag_id> -c '<json conf>'`, as the README documents it."""
    from tuneops.core.sample_data import write_sample_batch

    batch = write_sample_batch(_landing("cli") / "cli-batch.jsonl", 60, seed=11)
    conf = json.dumps({"batch_uri": str(batch), "project": "support_tickets"})
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
    assert mlflow.search_runs(
        experiment_names=["tuneops"], filter_string="tags.`tuneops.kind` = 'validation'", output_format="list"
    )


def test_training_run_carries_the_exact_dataset_version_as_mlflow_inputs(chain):
    from mlflow import MlflowClient

    dataset = task_result("llmops_build_prompt_dataset", chain["prompts"].run_id, "build")
    plan = task_result("llmops_finetune", chain["finetune"].run_id, "plan_training")

    def inputs(run_id: str) -> dict[str, tuple]:
        found = {}
        for item in MlflowClient().get_run(run_id).inputs.dataset_inputs:
            tags = {t.key: t.value for t in item.tags}
            found[item.dataset.name] = (
                item.dataset.digest,
                tags["mlflow.data.context"],
                tags["tuneops.template_hash"],
            )
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
    """Each trial's eval.* and gate.* keys too: the winner is evaluated and gated with its own settings."""
    from mlflow import MlflowClient

    sweep = [
        {"train.max_steps": 20, "train.learning_rate": 1e-6},  # barely moves: the worse trial
        {
            "train.max_steps": 20,
            "train.learning_rate": 0.003,
            "eval.max_examples": 16,  # the recipe's is 24
            "gate.safety_floor": 0.5,  # the recipe's is 0.9
        },
    ]
    run = dags["llmops_finetune"].test(run_conf={"recipe": FAST_RECIPE, "sweep": sweep})
    # 20 steps do not beat the champion: the run is red, and only its verdict says so.
    assert [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"] == ["verdict"]
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
    assert evaluations["candidate"]["n"] == {"test": 16, "golden": 16, "safety": 12}
    assert evaluations["base"]["n"] == {"test": 16, "golden": 16, "safety": 12}
    decision = task_result("llmops_finetune", run.run_id, "gate")
    floors = [c["threshold"] for c in decision["checks"] if c["rule"] == "safety_floor"]
    assert floors == [0.5]


def _asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
        ).all()
        return [dict(e.extra or {}) for e in rows]


def _write_traffic(template_fields: list[dict], shift: str = "") -> None:
    """Synthetic served traffic for the champion, in the current window of the inference log."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from tuneops.config import load_template
    from tuneops.core.inference_log import log_record, log_requests
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.core.templates import render_prompt

    template = load_template("triage_v1")
    ts = datetime.now(UTC) - timedelta(minutes=5)
    records = []
    for fields in template_fields:
        fields = {**fields, "input": fields["input"] + shift}
        records.append(
            log_record(
                request_id=uuid.uuid4().hex,
                model=MODEL,
                version="1",
                prompt=render_prompt(template, fields),
                inputs=fields,
                mode="inputs",
                response=fields.pop("triage"),
                latency_s=0.05,
                ts=ts,
            )
        )
    log_requests(records, ArtifactStore.from_settings(load_settings()))


def test_monitoring_alerts_on_drifted_traffic_and_requests_retraining(dags, chain, monkeypatch):
    """Unshifted traffic raises nothing; traffic about an unseen product line alerts (task log and a
    real Slack-style webhook) and emits tuneops_retrain_requested, which llmops_finetune is scheduled on."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tuneops.core.sample_data import generate_tickets

    posted = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_port}/hook"
    monkeypatch.setenv(
        "AIRFLOW_CONN_TUNEOPS_SLACK", json.dumps({"conn_type": "slackwebhook", "password": hook_url})
    )

    def tickets(seed):
        return [
            {"subject": t["subject"], "input": t["body"], "triage": t["triage"]}
            for t in generate_tickets(150, seed)
        ]

    before = len(_asset_events("tuneops_retrain_requested"))
    try:
        _write_traffic(tickets(501))
        calm = run_dag(dags, "llmops_monitor", {"config": MONITOR_CONFIG})
        assert task_result("llmops_monitor", calm.run_id, "assess")["breaches"] == []
        assert calm.get_task_instance("request_retrain", map_index=0).state == "skipped"
        assert posted == [] and len(_asset_events("tuneops_retrain_requested")) == before

        _write_traffic(
            tickets(502),
            shift=" Also my blockchain wallet stopped syncing while staking on the validator node.",
        )
        run = run_dag(dags, "llmops_monitor", {"config": MONITOR_CONFIG})
    finally:
        server.shutdown()
    result = task_result("llmops_monitor", run.run_id, "assess")
    breached = {b["metric"] for b in result["breaches"]}
    assert {"drift.prompt_tokens.psi", "drift.oov_increase"} <= breached, result
    assert task_result("llmops_monitor", run.run_id, "alert") == ["log", "slack"]
    assert "drift.oov_increase" in posted[0]["text"] and result["report_uri"] in posted[0]["text"]
    events = _asset_events("tuneops_retrain_requested")
    assert len(events) == before + 1 and events[-1]["model_name"] == MODEL
    assert set(events[-1]["breaches"]) == breached
    report = Path(result["report_uri"]).read_text()
    assert "retraining requested" in report and report.count("data:image/png;base64,") == 2


FEEDBACK_ITEMS = [
    "espresso machine",
    "standing desk",
    "trail running shoes",
    "mechanical keyboard",
    "camping stove",
    "baby monitor",
]
FEEDBACK_ISSUES = [
    "arrived with a cracked lid",
    "was delivered to the wrong address",
    "is missing its power adapter",
    "came two weeks after the promised date",
]


def test_feedback_corrections_from_the_endpoint_reach_the_next_prompt_dataset(dags, chain):
    """/generate then /feedback on the served champion; llmops_monitor lands the corrections and the
    landing event carries them through validation into the next prompt dataset, ids in its manifest."""
    import httpx

    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.serving.app import ServerThread, ServingConfig, create_app

    correction = json.dumps(
        {"category": "shipping", "priority": "normal", "team": "logistics"}, sort_keys=True
    )
    app = create_app(ServingConfig(model_name=MODEL, log_flush_seconds=0.2))
    feedback_ids = []
    with ServerThread(app) as url:
        for i, (item, issue) in enumerate((a, b) for a in FEEDBACK_ITEMS for b in FEEDBACK_ISSUES):
            inputs = {
                "subject": f"Problem with my {item}",
                "label": "web",
                "input": f"Hello, my {item} (order {5000 + i * 13}) {issue}. Can you sort this out for me?",
            }
            served = httpx.post(f"{url}/generate", json={"inputs": inputs, "max_new_tokens": 24}, timeout=120)
            assert served.status_code == 200, served.text
            answer = {"request_id": served.json()["request_id"], "rating": "down", "correction": correction}
            feedback_ids.append(httpx.post(f"{url}/feedback", json=answer, timeout=60).json()["feedback_id"])
        httpx.post(
            f"{url}/feedback", json={"request_id": served.json()["request_id"], "rating": "up"}, timeout=60
        )

    monitor = run_dag(dags, "llmops_monitor", {"config": MONITOR_CONFIG})
    landed = task_result("llmops_monitor", monitor.run_id, "export_feedback")
    lineage = json.loads(Path(landed["lineage_uri"]).read_text())
    assert landed["rows"] == 24 and lineage["feedback_ids"] == sorted(feedback_ids)
    assert _asset_events("tuneops_landing")[-1]["batch_uri"] == landed["batch_uri"]

    # Input: the landing event monitoring emitted. (batch_uri=None explicitly: dag.test() keeps the
    # conf of an earlier run of the same DAG object as its Params.)
    validate = run_dag(dags, "llmops_validate_data", {"batch_uri": None})
    validated = task_result("llmops_validate_data", validate.run_id, "validate")
    assert validated["rows"] == 24 and validated["source"] == landed["batch_uri"]
    prompts = run_dag(dags, "llmops_build_prompt_dataset", {"validated_uri": None})
    dataset = task_result("llmops_build_prompt_dataset", prompts.run_id, "build")
    store = ArtifactStore.from_settings(load_settings())
    manifest = json.loads((store.fetch_dir(store.key_of(dataset["uri"])) / "manifest.json").read_text())
    assert manifest["feedback"]["feedback_ids"] == sorted(feedback_ids)
    assert validated["batch_hash"] in [b["batch_hash"] for b in manifest["source_batches"]]

    again = run_dag(dags, "llmops_monitor", {"config": MONITOR_CONFIG})
    assert again.get_task_instance("export_feedback", map_index=0).state == "skipped", (
        "corrections are landed once"
    )


def test_deploy_gates_the_int8_variant_and_renders_the_serving_manifests(dags, chain):
    """llmops_deploy on the champion event: int8 vs merged side by side, then valid manifests for the
    chosen variant; no cluster here, so apply is skipped with the manifest's location."""
    import yaml
    from mlflow import MlflowClient

    run = run_dag_in_fresh_process("llmops_deploy", {"recipe": FAST_RECIPE, "gpu": False})
    assert run.state == "success"
    assert run.model_modules == []  # compression ran as a job: the task process loaded no model
    choice = task_result("llmops_deploy", run.run_id, "compress")
    assert (choice["model_name"], choice["version"]) == (MODEL, "1")
    decision = json.loads(Path(choice["report_uri"]).with_name("decision.json").read_text())
    assert decision["quantized"]["size_mb"] < decision["merged"]["size_mb"] / 2
    assert choice["variant"] == ("int8" if decision["passed"] else "merged")
    assert {c["rule"] for c in decision["checks"]} >= {"max_regression_vs_champion"}
    report = Path(choice["report_uri"]).read_text()
    assert "size (MB)" in report and "latency" in report and "test.rougeL" in report
    tags = MlflowClient().get_model_version(MODEL, "1").tags
    assert tags["tuneops.int8.gate"] == ("passed" if decision["passed"] else "failed")
    rendered = task_result("llmops_deploy", run.run_id, "render")
    docs = list(yaml.safe_load_all(Path(rendered["manifest_uri"]).read_text()))
    assert docs[0]["spec"]["template"]["metadata"]["annotations"]["tuneops/variant"] == choice["variant"]
    assert _task_state("llmops_deploy", run.run_id, "apply") == "skipped"


def test_rollback_dag_restores_the_previous_champion_and_records_why(dags, chain):
    """Runs last: it moves the champion."""
    from mlflow import MlflowClient

    from tuneops.core.settings import load_settings
    from tuneops.registry.registry import promote

    client = MlflowClient()
    v1 = client.get_model_version_by_alias(MODEL, "champion")
    v2 = client.create_model_version(MODEL, v1.source, v1.run_id)  # a second release to roll back from
    v1, v2 = str(v1.version), str(v2.version)
    promote(MODEL, v2, "tester", load_settings(), reason="second release")

    run = run_dag(dags, "llmops_rollback", {"model_name": MODEL, "reason": "v2 misroutes refunds"})

    assert task_result("llmops_rollback", run.run_id, "rollback") == {
        "name": MODEL,
        "version": v1,
        "previous": v2,
        "project": "support_tickets",  # whose deployment follows the move
    }
    assert _aliases(MODEL) == {"champion": v1, "previous_champion": v2}
    tags = client.get_model_version(MODEL, v2).tags
    assert tags["tuneops.rollback_reason"] == "v2 misroutes refunds" and tags["tuneops.rolled_back_by"]

    bad = dags["llmops_rollback"].test(run_conf={"model_name": MODEL, "version": 99, "reason": "typo"})
    assert bad.state == "failed"
    assert _aliases(MODEL)["champion"] == v1


def _aliases(name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return {alias: str(v) for alias, v in MlflowClient().get_registered_model(name).aliases.items()}
