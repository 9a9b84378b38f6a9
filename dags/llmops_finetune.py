"""
### llmops_finetune

Fine-tunes a LoRA adapter on a prompt dataset version, evaluates it against the base model
and the current champion on the same test examples, gates it, registers it in the MLflow
Model Registry with lineage tags and moves the `champion` alias when approved.

**Triggered by** `tuneops_prompt_dataset`, or by hand with the `dataset_uri` Param.

**Compute**: `local` runs `python -m tuneops.train ...` as a subprocess on the worker;
`kubernetes` runs the identical command in the trainer image on a GPU pod. The recipe's
`compute.backend` decides unless the `compute` Param overrides it.

**Emits** `tuneops_champion_model` with `extra={"model_name", "version"}` when a new
version is promoted.
"""

import os

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Param, dag, task
from kubernetes.client import models as k8s

from tuneops.assets import CHAMPION_MODEL, PROMPT_DATASET, resolve_input

PLAN = "{{{{ ti.xcom_pull(task_ids='plan_training')['{}'] }}}}"
GPUS = os.environ.get("TUNEOPS_TRAINER_GPUS", "1")


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

    train_kubernetes = KubernetesPodOperator(
        task_id="train_kubernetes",
        name="tuneops-train",
        namespace=os.environ.get("TUNEOPS_TRAINER_NAMESPACE", "tuneops"),
        image=os.environ.get("TUNEOPS_TRAINER_IMAGE", "ghcr.io/tuneops/trainer:0.1.0"),
        cmds=["python", "-m", "tuneops.train"],
        arguments=[
            "--recipe", PLAN.format("recipe"),
            "--dataset", PLAN.format("dataset_uri"),
            "--output", PLAN.format("output_uri"),
            "--run-id", PLAN.format("mlflow_run_id"),
        ],  # fmt: skip
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "4", "memory": "32Gi"}, limits={"memory": "48Gi", "nvidia.com/gpu": GPUS}
        ),
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="tuneops-credentials"))],
        do_xcom_push=True,
        reattach_on_restart=True,
        startup_timeout_seconds=900,
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
    )

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
