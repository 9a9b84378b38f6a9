"""
### llmops_finetune

Fine-tunes a LoRA adapter on a prompt dataset version, evaluates it against the base model
and the current champion on the same test examples, gates it, registers it in the MLflow
Model Registry with lineage tags and moves the `champion` alias when approved.

**Triggered by** `tuneops_prompt_dataset`, or by hand with the `dataset_uri` Param.

**Compute**: `local` runs `python -m tuneops.train ...` as a subprocess on the worker;
`kubernetes` runs the identical command in the trainer image on a GPU pod shaped by the
recipe's `compute.kubernetes` (GPUs, resources, node selector, tolerations, cache volume,
credentials Secret, startup timeout, `on_finish_action`, deferrable). A retried pod
resumes from the run's last complete checkpoint, or returns the published adapter. The
recipe's `compute.backend` decides unless the `compute` Param overrides it.

**Emits** `tuneops_champion_model` with `extra={"model_name", "version"}` when a new
version is promoted.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.assets import CHAMPION_MODEL, PROMPT_DATASET, resolve_input
from tuneops.trainer_pod import TrainerPodOperator


@dag(
    schedule=[PROMPT_DATASET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "training"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "dataset_uri": Param(None, type=["null", "string"], description="URI of a published prompt dataset version."),
        "recipe": Param("tiny-local", type="string", description="Recipe name (shipped) or YAML path."),
        "compute": Param(None, type=["null", "string"], enum=[None, "local", "kubernetes"], description="Override the recipe's compute backend."),
    },
)
def llmops_finetune():
    @task(inlets=[PROMPT_DATASET])
    def resolve_dataset(**context) -> str:
        return resolve_input(context, "dataset_uri", PROMPT_DATASET, "uri")

    @task
    def plan_training(dataset_uri: str, **context) -> dict:
        from tuneops.pipeline import plan_training

        labels = {"dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}
        return plan_training(dataset_uri, context["params"]["recipe"], labels)

    @task.branch
    def choose_compute(plan: dict, **context) -> str:
        return f"train_{context['params']['compute'] or plan['compute']}"

    @task
    def train_local(plan: dict) -> dict:
        from tuneops.pipeline import train_locally

        return train_locally(plan)

    # Image, GPUs, resources, tolerations, cache volume, secrets and lifecycle come from the
    # recipe's compute.kubernetes at run time (see tuneops.trainer_pod).
    train_kubernetes = TrainerPodOperator(task_id="train_kubernetes")

    @task(trigger_rule="none_failed_min_one_success")
    def training_summary(**context) -> dict:
        for task_id in ("train_local", "train_kubernetes"):
            summary = context["ti"].xcom_pull(task_ids=task_id)
            if summary:
                return summary
        raise ValueError("no training task returned a summary")

    @task
    def evaluate(plan: dict, summary: dict) -> dict:
        from tuneops.pipeline import evaluate_models

        return evaluate_models(plan, summary)

    @task
    def gate(plan: dict, evaluations: dict) -> dict:
        from tuneops.pipeline import run_gate

        return run_gate(plan, evaluations)

    @task.short_circuit
    def gate_passed(decision: dict) -> bool:
        return decision["passed"]

    @task(outlets=[CHAMPION_MODEL])
    def register_and_promote(plan: dict, summary: dict, evaluations: dict, decision: dict, **context) -> dict:
        from tuneops.pipeline import register_and_promote

        labels = {"dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}
        result = register_and_promote(plan, summary, evaluations, decision, labels)
        context["outlet_events"][CHAMPION_MODEL].extra = {"model_name": result["name"], "version": result["version"]}
        return result

    plan = plan_training(resolve_dataset())
    branch = choose_compute(plan)
    local = train_local(plan)
    branch >> [local, train_kubernetes]
    summary = training_summary()
    [local, train_kubernetes] >> summary
    evaluations = evaluate(plan, summary)
    decision = gate(plan, evaluations)
    gate_passed(decision) >> register_and_promote(plan, summary, evaluations, decision)


llmops_finetune()
