"""The end-to-end demo: sample data -> validate -> prompts -> finetune, through the real DAGs.

Runs each DAG with ``dag.test()`` (Airflow's in-process runner, SQLite metadata DB), in
order, the way the Assets chain them: the first gets the landing batch as a Param, the
next ones read the URI from the asset event their predecessor emitted. Then it prints the
dataset version, MLflow run id, the registered model and alias, and the gate's table, and
generates one reply with ``models:/<name>@champion`` in a fresh process.

Run it with ``make demo`` (which sets AIRFLOW_HOME, TUNEOPS_HOME and MLflow's URIs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAIN = ("llmops_validate_data", "llmops_build_prompt_dataset", "llmops_finetune")


def load_dags() -> dict:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.dags


def run_dag(dags: dict, dag_id: str, conf: dict | None = None):
    """Run one DAG with dag.test(); returns the DagRun or exits naming the failed tasks."""
    run = dags[dag_id].test(run_conf=conf or {})
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
        raise SystemExit(
            f"{dag_id} run {run.run_id} ended {run.state}; failed tasks: {failed} (see the log above)"
        )
    return run


def task_result(dag_id: str, run_id: str, task_id: str):
    """The return value (XCom) of one task of a finished DAG run, or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id, key="return_value")
        ).first()
        return XComModel.deserialize_value(row) if row is not None else None


def print_replies(evaluations: dict, settings, trained: str, examples: int = 3) -> None:
    """The first golden tickets with the reference reply, the base model's and the trained model's
    (``trained`` names it: the new champion, or a candidate the gate or a reviewer held back)."""
    import textwrap

    from tuneops.core.store import ArtifactStore
    from tuneops.evaluation.evaluate import read_outputs

    store = ArtifactStore.from_settings(settings)
    golden = {
        role: read_outputs(result["uri"], store).get("golden")
        for role, result in (evaluations or {}).items()
        if result.get("uri") and role in ("base", "candidate")
    }
    if set(golden) != {"base", "candidate"} or any(table is None for table in golden.values()):
        return  # an evaluation failed (the gate table says which) or the recipe has no golden split
    print(f"\nreplies on the golden set (first {examples}), the base model vs the {trained}:")
    for i in range(min(examples, len(golden["base"]))):
        row = golden["base"].iloc[i]
        print("-" * 72)
        ticket = next(
            (line for line in row["prompt"].splitlines() if line.startswith("Subject:")), row["prompt"]
        )
        print(f"ticket     {textwrap.shorten(ticket, 140)}")
        print(f"reference  {row['reference']}")
        print(f"base       {textwrap.shorten(str(row['prediction']), 150)}")
        print(f"{trained:<11}{textwrap.shorten(str(golden['candidate'].iloc[i]['prediction']), 150)}")


def main() -> int:
    from tuneops.core.sample_data import write_sample_batch
    from tuneops.core.settings import load_settings

    started = time.monotonic()
    settings = load_settings()
    rows = int(os.environ.get("TUNEOPS_DEMO_ROWS", "2000"))
    batch = write_sample_batch(
        settings.home / "landing" / "support_tickets" / "batch-0001.jsonl", rows, seed=0
    )
    dags = load_dags()

    runs = {CHAIN[0]: run_dag(dags, CHAIN[0], {"batch_uri": str(batch), "project": "support_tickets"})}
    for dag_id in CHAIN[1:]:
        runs[dag_id] = run_dag(dags, dag_id)

    validated = task_result(CHAIN[0], runs[CHAIN[0]].run_id, "validate")
    dataset = task_result(CHAIN[1], runs[CHAIN[1]].run_id, "build")
    ft = runs[CHAIN[2]].run_id
    plan = task_result(CHAIN[2], ft, "plan_training")
    summary = task_result(CHAIN[2], ft, "select_trial")["summary"]
    decision = task_result(CHAIN[2], ft, "gate")
    registered = task_result(CHAIN[2], ft, "register_challenger")
    promoted = task_result(CHAIN[2], ft, "promote")

    print("\n" + "=" * 72)
    print("tuneops demo summary")
    print("=" * 72)
    print(f"landing batch      {batch} ({validated['rows']} rows{', reused' if validated['reused'] else ''})")
    print(f"validated batch    {validated['uri']}")
    print(
        f"dataset version    {dataset['version']} {dataset['counts']}{' (reused)' if dataset['reused'] else ''}"
    )
    print(f"MLflow run id      {plan['mlflow_run_id']}  (tracking: {settings.tracking_uri})")
    print(f"adapter            {summary['output_uri']}{' (reused)' if summary.get('reused') else ''}")
    if registered:
        alias = "champion" if promoted else "challenger (awaiting approval)"
        print(
            f"registered model   {registered['name']} version {registered['version']} alias @{alias}"
            f"{' (already registered)' if registered['reused'] else ''}"
        )
    else:
        print("registered model   none: the candidate did not pass the gate")
    print("\n" + decision["text"])
    print(f"gate report        {decision['report_uri']}")
    print_replies(task_result(CHAIN[2], ft, "evaluate"), settings, "champion" if promoted else "candidate")
    if registered:
        print("\nmodels:/{}@champion in a fresh process:".format(registered["name"]))
        sys.stdout.flush()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tuneops",
                "generate",
                "--model",
                registered["name"],
                "--subject",
                "Charged twice",
                "--body",
                "Hi, this is Sam. I was charged twice for my Acme Mail "
                "subscription this month. Order 12345. This is urgent, production is down.",
            ],
            check=True,
        )
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0 if registered else 1


if __name__ == "__main__":
    sys.exit(main())
