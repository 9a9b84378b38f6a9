"""
### llmops_finetune

Fine-tunes a LoRA adapter on a prompt dataset version, evaluates it against the base model
and the current champion on the same test examples, gates it, registers it in the MLflow
Model Registry with lineage tags and moves the `champion` alias when approved.

**Triggered by** a new prompt dataset (`tuneops_prompt_dataset`) or a retraining request
(`tuneops_retrain_requested`: drift or a feedback drop from monitoring, or the weekly
`llmops_retrain_weekly`), one run per project (the events' partition key), or by hand with the
`dataset_uri` Param. Without the Param it trains on the project's latest prompt dataset, which by
then holds the landed human corrections. The project decides the recipe, the registered model
name and the safety suite; the `recipe` Param overrides the recipe for a run started by hand.

**Compute**: every step that loads the model is a job. `local` runs `python -m tuneops.training.train
...` (and `python -m tuneops.jobs evaluate|register --input <uri>` for evaluation and registration)
as a subprocess of the task; `kubernetes` runs the identical command in the trainer image on a GPU
pod shaped by the recipe's `compute.kubernetes` (GPUs, resources, node selector, tolerations, cache
volume, credentials Secret, startup timeout, `on_finish_action`, deferrable); more than one GPU
trains under `torchrun --nproc_per_node=<gpus>`. The worker itself never loads weights. A retried
pod resumes from the run's last complete checkpoint, or returns the published adapter. The
recipe's `compute.backend` decides unless the `compute` Param overrides it.

**Sweeps**: the `sweep` Param (a list of trials or a grid of recipe keys) maps the
training task over trials, each an MLflow child run with its own output; the trial with
the lowest validation loss goes on to evaluation, and the sweep table (eval loss,
tokens/s, seconds, estimated GPU-hours) is logged to the parent run.

**Evaluation and gate**: base, candidate and the current champion (the registry's
`champion` alias) generate for the same test and golden examples and the safety suite;
the recipe's `gate` rules decide, failing closed. The decision table and the rule that
decided are in the `gate` task log; the HTML report is logged to MLflow.

**Promotion**: a passing candidate is registered as its LoRA adapter plus a reference to its base
model (id, content fingerprint, where it is stored; lineage tags, model card) and gets the
`challenger` alias. With `registry.auto_approve` it becomes `champion` at once; otherwise
the `approve` task waits in *Required actions* for a reviewer (Approve / Reject, with a
reason). A rejection is recorded on the version by `record_review`. Promotions run in the
one-slot `tuneops_promotion` pool.

**Verdict**: a candidate that fails the gate fails the run (the `verdict` task, red in the UI, its
log and the notifier carry the table, the deciding rule and the report); nothing is registered.

**Emits** `tuneops_champion_model`, partitioned by project, with `extra={"model_name", "version",
"project"}` when a version is promoted.
"""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from tuneops.airflow.approval import REVIEW_KEY, PromotionApproval
from tuneops.airflow.assets import (
    CHAMPION_MODEL,
    PROMOTION_POOL,
    PROMPT_DATASET,
    RETRAIN_REQUESTED,
    emit,
    resolve_input,
)
from tuneops.airflow.model_job import ModelJobOperator
from tuneops.airflow.notifier import StageFailureNotifier
from tuneops.airflow.trainer_local import LocalTrainerOperator
from tuneops.airflow.trainer_pod import TrainerPodOperator


@dag(
    schedule=PartitionedAssetTimetable(assets=PROMPT_DATASET | RETRAIN_REQUESTED),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "training"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "dataset_uri": Param(
            None, type=["null", "string"], description="URI of a published prompt dataset version."
        ),
        "project": Param(
            None,
            type=["null", "string"],
            description="Project (default: the run's partition, or the dataset's).",
        ),
        "recipe": Param(
            None,
            type=["null", "string"],
            description="Recipe name (shipped) or YAML path in a TUNEOPS_RECIPE_DIRS folder; default: the project's.",
        ),
        "compute": Param(
            None,
            type=["null", "string"],
            enum=[None, "local", "kubernetes"],
            description="Override the recipe's compute backend.",
        ),
        "sweep": Param(
            None,
            type=["null", "array", "object"],
            description=(
                'Hyperparameter sweep: a list of trials ([{"lora.r": 8}, {"train.learning_rate": 0.001}]) or a grid '
                '({"lora.r": [8, 16], "train.learning_rate": [0.001, 0.003]}). Trials train in parallel; the lowest '
                "validation loss goes on to evaluation. At most TUNEOPS_MAX_SWEEP_TRIALS trials (32); keys that pick "
                "code, images or credentials (base_model, trust_remote_code, compute.kubernetes.image, ...) "
                "only where TUNEOPS_ALLOWED_OVERRIDES allows them."
            ),
        ),
    },
)
def llmops_finetune():
    @task(inlets=[PROMPT_DATASET])
    def resolve_dataset(**context) -> dict:
        return resolve_input(context, "dataset_uri", PROMPT_DATASET, "uri")

    @task
    def plan_training(dataset: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.config import ConfigError
        from tuneops.stages.finetune import plan_training

        labels = {"dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}
        params = context["params"]
        try:
            plan = plan_training(
                dataset["value"],
                params["recipe"],
                labels,
                sweep=params["sweep"],
                compute=params["compute"],
                project=dataset["project"],
            )
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc  # a bad recipe or sweep fails alike on a retry
        if plan.project is None:  # its champion event would reach no deployment
            raise AirflowFailException(
                f"no project owns dataset {plan.dataset_version} ({dataset['value']}): set the 'project' Param"
            )
        return plan.model_dump(mode="json")

    @task
    def plan_trials(plan: dict, **context) -> list[dict]:
        from tuneops.stages.finetune import plan_trials

        return [trial.model_dump(mode="json") for trial in plan_trials(plan, context["params"]["sweep"])]

    @task.branch
    def choose_compute(plan: dict) -> str:
        return f"train_{plan['compute']}"  # the recipe's backend, or the compute Param's

    @task(trigger_rule="none_failed_min_one_success")
    def select_trial(plan: dict, trials: list[dict], **context) -> dict:
        from tuneops.stages.finetune import select_trial

        # Explicit map indexes: with one trial, xcom_pull would return that trial's dict, not a list.
        indexes = list(range(len(trials)))
        pulled = [
            context["ti"].xcom_pull(task_ids=t, map_indexes=indexes)
            for t in ("train_local", "train_kubernetes")
        ]
        summaries = [s for results in pulled for s in results or [] if s]
        return select_trial(plan, trials, summaries).model_dump(mode="json")

    @task
    def gate(best: dict, evaluations: dict) -> dict:
        from tuneops.stages.finetune import run_gate

        return run_gate(best["plan"], evaluations).model_dump(mode="json")

    @task.short_circuit
    def gate_passed(decision: dict) -> bool:
        return decision["passed"]

    @task(on_failure_callback=StageFailureNotifier("gate failed"))
    def verdict(best: dict, decision: dict) -> str:
        """Fails the run when the gate failed, so the verdict is where users look: a red run,
        this task's log, the notifier."""
        from airflow.sdk.exceptions import AirflowFailException

        plan = best["plan"]
        if not decision["passed"]:
            raise AirflowFailException(
                f"gate FAILED for project {plan['project']} (model {plan['recipe']['registry']['model_name']}, "
                f"dataset {plan['dataset_version']}): {decision['deciding_rule']}\n"
                f"report: {decision['report_uri']}\n{decision['text']}"
            )
        return f"gate passed: {decision['deciding_rule']}"

    @task.branch
    def route_approval(registered: dict) -> str:
        return "auto_approve" if registered["auto_approve"] else "approve"

    auto_approve = EmptyOperator(task_id="auto_approve")  # registry.auto_approve in the recipe

    # Rejected (or no answer within a week): `promote` is skipped and `record_review` records it.
    approve = PromotionApproval(
        task_id="approve",
        subject="Promote {{ ti.xcom_pull(task_ids='register_challenger')['name'] }} "
        "v{{ ti.xcom_pull(task_ids='register_challenger')['version'] }} to champion?",
        body="Gate report: {{ ti.xcom_pull(task_ids='gate')['report_uri'] }}\n\n"
        "```\n{{ ti.xcom_pull(task_ids='gate')['text'] }}\n```",
        defaults="Reject",
        params={
            "reason": Param(
                "", type="string", description="Why you approve or reject; recorded on the version."
            )
        },
        response_timeout=timedelta(days=7),  # a plain timedelta: the task runner msgpack-encodes it
    )

    @task(trigger_rule="none_failed_min_one_success", pool=PROMOTION_POOL, outlets=[CHAMPION_MODEL])
    def promote(registered: dict, **context) -> dict:
        from tuneops.stages.finetune import promote_challenger

        approval = context["ti"].xcom_pull(task_ids="approve", key=REVIEW_KEY)
        labels = {"dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}
        result = promote_challenger(registered, approval, labels)
        emit(
            context,
            CHAMPION_MODEL,
            registered.get("project"),
            model_name=result["name"],
            version=result["version"],
        )
        return result

    @task(trigger_rule="none_failed")
    def record_review(registered: dict, **context) -> dict:
        from tuneops.stages.finetune import record_rejection

        approval = context["ti"].xcom_pull(task_ids="approve", key=REVIEW_KEY)
        if approval and approval["chosen_options"] == [PromotionApproval.REJECT]:
            return record_rejection(registered, approval)
        return {"rejected": False}

    plan = plan_training(resolve_dataset())
    trials = plan_trials(plan)
    branch = choose_compute(plan)
    # The trainer subprocess dies with its task (on_kill, parent-death signal); see tuneops.airflow.trainer_local.
    local = LocalTrainerOperator.partial(task_id="train_local").expand(plan=trials)
    # Image, GPUs, resources, tolerations, cache volume, secrets and lifecycle come from each
    # trial's recipe at run time (see tuneops.airflow.trainer_pod).
    kubernetes = TrainerPodOperator.partial(task_id="train_kubernetes").expand(plan=trials)
    branch >> [local, kubernetes]
    best = select_trial(plan, trials)
    [local, kubernetes] >> best
    # Model jobs: a subprocess or a pod like the trainer's (tuneops.airflow.model_job); this worker loads no weights.
    evaluations = ModelJobOperator(task_id="evaluate", job="evaluate", payload={"choice": best}).output
    decision = gate(best, evaluations)
    registered = ModelJobOperator(
        task_id="register_challenger",
        job="register",
        payload={
            "choice": best,
            "evaluations": evaluations,
            "decision": decision,
            "labels": {"dag_id": "{{ dag.dag_id }}", "dag_run_id": "{{ run_id }}"},
        },
    ).output
    gate_passed(decision) >> registered
    verdict(best, decision)
    promoted = promote(registered)
    route_approval(registered) >> [approve, auto_approve] >> promoted >> record_review(registered)


llmops_finetune()
