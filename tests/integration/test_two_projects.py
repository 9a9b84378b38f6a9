"""Two projects through one deployment at the same time, under the real scheduler.

The stack (API server, scheduler, DAG processor, triggerer on a fresh PostgreSQL database; a fresh
artifact store and MLflow) runs validate -> prompts -> finetune for whatever lands. Two batches
land back to back through the REST API: support tickets (the tests' support_tickets project) and
headlines, a prompt/completion project written here with its own dataset config, template-less
records without ids, its own recipe and its own registered model. Each must reach its own prompt
dataset, its own trained candidate and its own champion with its own recipe, with no row in the
other's manifest. An event naming an unknown project fails its validation naming it; one
naming none fails llmops_landing_check naming the event and the fix.
"""

import json
import random
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_DIR, RECIPE_DIR
from tests.integration.airflow_stack import REPO, AirflowStack, running
from tests.support.tiny_models import seed_builtin_base_model
from tuneops.airflow.assets import LANDING

pytestmark = pytest.mark.integration
CHAIN = ("llmops_validate_data", "llmops_build_prompt_dataset", "llmops_finetune")
CHECK = "llmops_landing_check"
PROJECTS = {"support_tickets": "tuneops-test-triage", "headlines": "tuneops-test-headlines"}
CHAIN_TIMEOUT = 1200

CITIES = [
    "Oslo",
    "Lima",
    "Kyoto",
    "Accra",
    "Perth",
    "Quito",
    "Turin",
    "Davao",
    "Sfax",
    "Brno",
    "Ghent",
    "Cork",
]
SECTIONS = {
    "transport": ["bridge", "tunnel", "harbour", "airport"],
    "culture": ["museum", "library", "theatre"],
    "sport": ["stadium", "arena", "pool"],
}
VERBS = ["opens", "closes", "rebuilds", "sells"]


def headline_records(n: int, seed: int) -> list[dict]:
    """Headline -> news section pairs with an end-of-text marker, no ids, some rows repeated."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        section = rng.choice(sorted(SECTIONS))
        city, thing, verb = rng.choice(CITIES), rng.choice(SECTIONS[section]), rng.choice(VERBS)
        prompt = f"Which news section? {city} {verb} its old {thing}, built in {rng.randint(1900, 2030)}."
        records.append({"prompt": prompt, "completion": f"section: {section}<|endoftext|>"})
    return records + records[: n // 20]  # repeats, as scraped data has


def write_headlines_project() -> None:
    """The headlines project as a user would have it: dataset config, recipe, project file."""
    dataset = {
        "name": "headlines",
        "columns": {"input": "prompt", "response": "completion"},  # no id: content-hash ids
        "tokenizer": "builtin:tiny-llama",
        "validation": {"min_rows": 20, "max_duplicate_rate": 0.2},
        "cleaning": {"token_bounds": [4, 160]},
    }
    configs = PROJECT_DIR.parent / "headlines-configs"  # beside the project folder, not in it
    configs.mkdir(exist_ok=True)
    (configs / "headlines.yaml").write_text(yaml.safe_dump(dataset))
    recipe = yaml.safe_load((REPO / "tests" / "data" / "recipe-fast.yaml").read_text())
    recipe["train"]["max_steps"] = 80
    recipe["eval"] |= {"splits": ["test"], "safety_suite": "generic"}
    recipe["eval"]["max_new_tokens"] = 8
    # An honest gate for a new project: clearly better than the base model, safety counted but
    # not floored (the tiny base model is no instruction follower).
    recipe["gate"] = {"rules": {"test.rougeL": {"min_improvement_over_base": 0.3}}, "safety_floor": 0.0}
    recipe["registry"]["model_name"] = "ignored-the-project-decides"
    (RECIPE_DIR / "recipe-headlines.yaml").write_text(yaml.safe_dump(recipe))
    project = {
        "name": "headlines",
        "dataset": "../headlines-configs/headlines.yaml",
        "recipe": str(RECIPE_DIR / "recipe-headlines.yaml"),
        "model_name": PROJECTS["headlines"],
        "safety_suite": "generic",
    }
    (PROJECT_DIR / "headlines.yaml").write_text(yaml.safe_dump(project))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, request):
    write_headlines_project()
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-projects"))
    seed_builtin_base_model(str(stack.tuneops_home / "artifacts"))
    with running(stack, request, parsed=(*CHAIN, CHECK), unpause=(*CHAIN, CHECK)):
        yield stack


def _land(stack: AirflowStack, project: str | None, name: str, records: list[dict]) -> str:
    folder = stack.tuneops_home / "landing" / (project or "none")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    asset_id = next(a["id"] for a in stack.call("GET", "/assets")["assets"] if a["name"] == LANDING.name)
    event = {"asset_id": asset_id, "extra": {"batch_uri": str(path)}}
    stack.call("POST", "/assets/events", json=event | ({"partition_key": project} if project else {}))
    return str(path)


def _runs(stack: AirflowStack, dag_id: str) -> list[dict]:
    return [r for r in stack.runs(dag_id) if r["run_type"] == "asset_triggered"]


def _tasks(stack: AirflowStack, dag_id: str, run_id: str) -> list[dict]:
    return stack.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]


@pytest.fixture(scope="module")
def chain(airflow):
    from tuneops.core.sample_data import generate_tickets

    tickets = _land(airflow, "support_tickets", "tickets.jsonl", generate_tickets(400, seed=5))
    headlines = _land(airflow, "headlines", "headlines.jsonl", headline_records(400, seed=1))

    def finetuned():
        runs = _runs(airflow, "llmops_finetune")
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"finetune failed: {failed}\n{airflow.log_tails()}"
        done = {r["partition_key"]: r for r in runs if r["state"] == "success"}
        return done if set(done) == set(PROJECTS) else None

    finetunes = airflow.wait_for(
        "a finetune run per project to succeed", finetuned, CHAIN_TIMEOUT, interval=10
    )
    builds = {r["partition_key"]: r for r in _runs(airflow, "llmops_build_prompt_dataset")}
    return {
        "landed": {"support_tickets": tickets, "headlines": headlines},
        "finetune": finetunes,
        "build": builds,
    }


def test_each_project_gets_its_own_runs_dataset_recipe_and_champion(airflow, chain):
    from mlflow import MlflowClient

    from tuneops.contracts import DatasetManifest

    assert set(chain["build"]) == set(PROJECTS), "one prompt-dataset run per project (its partition)"
    # This stack's own MLflow, registry included (an earlier test may have set the process's registry URI).
    uri = airflow.env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ids = {}
    for project, model in PROJECTS.items():
        build = airflow.xcom("llmops_build_prompt_dataset", chain["build"][project]["dag_run_id"], "build")
        run_id = chain["finetune"][project]["dag_run_id"]
        plan = airflow.xcom("llmops_finetune", run_id, "plan_training")
        promoted = airflow.xcom("llmops_finetune", run_id, "promote")

        manifest = DatasetManifest.load(Path(build["uri"]))
        assert manifest.dataset == project and build["project"] == project
        assert {Path(b["uri"]).parent.name for b in manifest.source_batches} == {project}
        assert plan["project"] == project and plan["dataset_uri"] == build["uri"]
        assert plan["recipe"]["registry"]["model_name"] == model
        assert promoted["name"] == model
        champion = client.get_model_version_by_alias(model, "champion")
        assert champion.tags["tuneops.project"] == project
        assert champion.tags["tuneops.dataset_version"] == manifest.version

        from datasets import load_from_disk

        splits = load_from_disk(str(Path(build["uri"]) / "data"))
        ids[project] = {i for split in splits.values() for i in split["id"]}
        responses = [r for split in splits.values() for r in split["response"]]
        assert not any("<|endoftext|>" in r for r in responses)
    assert not ids["support_tickets"] & ids["headlines"], "a row crossed between the projects' datasets"
    # Each trained with its own recipe: the short support-ticket recipe and the headlines one.
    plans = {
        p: airflow.xcom("llmops_finetune", chain["finetune"][p]["dag_run_id"], "plan_training")
        for p in PROJECTS
    }
    assert plans["support_tickets"]["recipe_ref"].endswith("recipe-fast.yaml")
    assert plans["headlines"]["recipe_ref"].endswith("recipe-headlines.yaml")
    assert plans["headlines"]["recipe"]["eval"]["safety_suite"] == "generic"
    # The headlines batch had no ids and repeated rows: content-hash ids, the repeats dropped and counted.
    headlines = DatasetManifest.load(
        Path(
            airflow.xcom("llmops_build_prompt_dataset", chain["build"]["headlines"]["dag_run_id"], "build")[
                "uri"
            ]
        )
    )
    assert headlines.dropped["duplicate_id"] >= 20
    assert headlines.markers_stripped["<|endoftext|>"] > 0


def test_an_event_naming_an_unknown_project_or_none_fails_naming_it(airflow, chain):
    seen = {r["dag_run_id"] for dag_id in (CHAIN[0], CHECK) for r in _runs(airflow, dag_id)}
    _land(airflow, "nope", "orphan.jsonl", headline_records(30, seed=2))
    _land(airflow, None, "anonymous.jsonl", headline_records(30, seed=3))

    def finished(dag_id, task_id):
        def probe():
            runs = [r for r in _runs(airflow, dag_id) if r["dag_run_id"] not in seen]
            done = [r for r in runs if r["state"] in ("failed", "success")]
            return [
                t for r in done for t in _tasks(airflow, dag_id, r["dag_run_id"]) if t["task_id"] == task_id
            ]

        return airflow.wait_for(f"{dag_id} to finish", probe, 300)

    (unknown,) = finished(CHAIN[0], "validate")
    assert unknown["state"] == "failed"
    log = _log(airflow, CHAIN[0], unknown)
    assert "no project named 'nope'; known projects:" in log, log[-3000:]
    assert "headlines" in log and "support_tickets" in log, log[-3000:]
    assert not (airflow.tuneops_home / "artifacts" / "validated" / "nope").exists()

    (unrouted,) = finished(CHECK, "refuse_unrouted")
    assert unrouted["state"] == "failed"
    log = _log(airflow, CHECK, unrouted)
    assert "landing event(s) without a project" in log and "anonymous.jsonl" in log, log[-3000:]
    assert "partition_key set to its project" in log, log[-3000:]


def _log(stack: AirflowStack, dag_id: str, task: dict) -> str:
    path = f"/dags/{dag_id}/dagRuns/{task['dag_run_id']}/taskInstances/{task['task_id']}/logs/{task['try_number']}"
    return json.dumps(stack.call("GET", path, params={"map_index": task["map_index"], "full_content": True}))
