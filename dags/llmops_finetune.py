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

**Sweeps**: the `sweep` Param (a list of trials or a grid of recipe keys) maps the
training task over trials, each an MLflow child run with its own output; the trial with
the lowest validation loss goes on to evaluation, and the sweep table (eval loss,
tokens/s, seconds, estimated GPU-hours) is logged to the parent run.

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
        "sweep": Param(
            None,
            type=["null", "array", "object"],
            description=(
                'Hyperparameter sweep: a list of trials ([{"lora.r": 8}, {"train.learning_rate": 0.001}]) or a grid '
                '({"lora.r": [8, 16], "train.learning_rate": [0.001, 0.003]}). Trials train in parallel; the lowest '
                "validation loss goes on to evaluation."
            ),
        ),
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

    @task
    def plan_trials(plan: dict, **context) -> list[dict]:
        from tuneops.pipeline import plan_trials

        return plan_trials(plan, context["params"]["sweep"])

    @task.branch
    def choose_compute(plan: dict, **context) -> str:
        return f"train_{context['params']['compute'] or plan['compute']}"

    @task
    def train_local(plan: dict) -> dict:
        from tuneops.pipeline import train_locally

        return train_locally(plan)

    @task(trigger_rule="none_failed_min_one_success")
    def select_trial(plan: dict, trials: list[dict], **context) -> dict:
        from tuneops.pipeline import select_trial

        # Explicit map indexes: with one trial, xcom_pull would return that trial's dict, not a list.
        indexes = list(range(len(trials)))
        pulled = [context["ti"].xcom_pull(task_ids=t, map_indexes=indexes) for t in ("train_local", "train_kubernetes")]
        return select_trial(plan, trials, [s for results in pulled for s in results or [] if s])

    @task
    def evaluate(best: dict) -> dict:
        from tuneops.pipeline import evaluate_models

        return evaluate_models(best["plan"], best["summary"])

    @task
    def gate(best: dict, evaluations: dict) -> dict:
        from tuneops.pipeline import run_gate

        return run_gate(best["plan"], evaluations)

    @task.short_circuit
    def gate_passed(decision: dict) -> bool:
        return decision["passed"]

    @task(outlets=[CHAMPION_MODEL])
    def register_and_promote(best: dict, evaluations: dict, decision: dict, **context) -> dict:
        from tuneops.pipeline import register_and_promote

        labels = {"dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}
        result = register_and_promote(best["plan"], best["summary"], evaluations, decision, labels)
        context["outlet_events"][CHAMPION_MODEL].extra = {"model_name": result["name"], "version": result["version"]}
        return result

    plan = plan_training(resolve_dataset())
    trials = plan_trials(plan)
    branch = choose_compute(plan)
    local = train_local.expand(plan=trials)
    # Image, GPUs, resources, tolerations, cache volume, secrets and lifecycle come from each
    # trial's recipe at run time (see tuneops.trainer_pod).
    kubernetes = TrainerPodOperator.partial(task_id="train_kubernetes").expand(plan=trials)
    branch >> [local, kubernetes]
    best = select_trial(plan, trials)
    [local, kubernetes] >> best
    evaluations = evaluate(best)
    decision = gate(best, evaluations)
    gate_passed(decision) >> register_and_promote(best, evaluations, decision)

llmops_finetune()
