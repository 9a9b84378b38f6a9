"""
### llmops_monitor

Every hour, for every project that names a monitoring config (one mapped task each), assesses
the last window of the serving endpoint's inference log and feedback against that config
(`configs/monitoring/*.yaml`, with the project's model and dataset):

- **drift** of the prompts against the training prompts of the version serving them (PSI
  and KS on prompt length in characters and tokens, unseen-word rate, output label mix);
- **health**: error, empty, refusal and format-valid rates, latency p95, PII in outputs,
  prompt-injection attempts;
- **feedback**: thumbs-up rate, corrections, worst examples.

The HTML report goes to `monitoring/<model>/<window>/` in the artifact store and to the
model's MLflow monitoring run, whose metrics (one step per hour) show the trends.

**Alerts**: every breach is in the `alert` task log, and goes to Slack (connection
`tuneops_slack`) and e-mail when configured. A breach of a kind in `retrain_on` emits
`tuneops_retrain_requested` for that project (its partition), which `llmops_finetune` is
scheduled on.

**Feedback loop**: `export_feedback` lands the new human corrections as a batch in the
dataset's raw format and emits `tuneops_landing` naming the project, so they flow through
validation and prompt building like any batch.

Params: `project` (only this one), `config` (a monitoring config name or YAML path instead of the
projects'), `window_hours` (overrides the config).
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import LANDING, RETRAIN_REQUESTED, emit


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "monitoring"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2)},
    params={
        "project": Param(
            None, type=["null", "string"], description="Only this project (default: every one)."
        ),
        "config": Param(
            None,
            type=["null", "string"],
            description="A monitoring config name or YAML path instead of the projects'.",
        ),
        "window_hours": Param(
            None, type=["null", "integer"], minimum=1, description="Hours of log to assess."
        ),
    },
)
def llmops_monitor():
    def _config(target: dict, params):
        from tuneops.stages.monitor import monitor_config

        return monitor_config(target["config"], params.get("window_hours"), target["project"])

    @task
    def targets(**context) -> list[dict]:
        from tuneops.stages.monitor import monitor_targets

        return monitor_targets(context["params"]["project"], context["params"]["config"])

    @task(outlets=[LANDING], map_index_template="{{ target['project'] }}")
    def export_feedback(target: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tuneops.stages.monitor import export_feedback

        result = export_feedback(_config(target, context["params"]))
        if not result["batch_uri"]:
            raise AirflowSkipException(f"no batch of corrections to land yet: {result}")
        emit(context, LANDING, target["project"], batch_uri=result["batch_uri"], feedback_rows=result["rows"])
        # The feedback ids stay in the lineage file: XCom carries only small things.
        return {k: v for k, v in result.items() if k != "feedback_ids"}

    @task(map_index_template="{{ target['project'] }}")
    def assess(target: dict, **context) -> dict:
        from tuneops.stages.monitor import assess as assess_window

        # A manual run without a logical date (UI, REST API) has no data interval: the window ends now.
        window_end = context.get("data_interval_end") or pendulum.now("UTC")
        return {**assess_window(_config(target, context["params"]), window_end), "target": target}

    @task
    def alert(result: dict, **context) -> list[str]:
        from tuneops.airflow.notifier import MonitoringAlert

        if not result["breaches"]:
            return []
        config = _config(result["target"], context["params"])
        return MonitoringAlert(result, config.model_name, config.alerts).notify(context)

    @task(outlets=[RETRAIN_REQUESTED])
    def request_retrain(result: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["retrain"]:
            raise AirflowSkipException("no breach of a kind in retrain_on")
        extra = {
            "model_name": _config(result["target"], context["params"]).model_name,
            "breaches": [b["metric"] for b in result["breaches"]],
            "window_end": result["window_end"],
            "report_uri": result["report_uri"],
        }
        emit(context, RETRAIN_REQUESTED, result["target"]["project"], **extra)
        return extra

    chosen = targets()
    results = assess.expand(target=chosen)
    export_feedback.expand(target=chosen)
    alert.expand(result=results)
    request_retrain.expand(result=results)


llmops_monitor()
