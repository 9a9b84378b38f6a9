"""
### llmops_monitor

Every hour, assesses the last window of the serving endpoint's inference log and feedback
against a monitoring config (`configs/monitoring/*.yaml`):

- **drift** of the prompts against the training prompts of the version serving them (PSI
  and KS on prompt length in characters and tokens, unseen-word rate, output label mix);
- **health**: error, empty, refusal and format-valid rates, latency p95, PII in outputs,
  prompt-injection attempts;
- **feedback**: thumbs-up rate, corrections, worst examples.

The HTML report goes to `monitoring/<model>/<window>/` in the artifact store and to the
model's MLflow monitoring run, whose metrics (one step per hour) show the trends.

**Alerts**: every breach is in the `alert` task log, and goes to Slack (connection
`tuneops_slack`) and e-mail when configured. A breach of a kind in `retrain_on` emits
`tuneops_retrain_requested`, which `llmops_finetune` is scheduled on.

**Feedback loop**: `export_feedback` lands the new human corrections as a batch in the
dataset's raw format and emits `tuneops_landing_support_tickets`, so they flow through
validation and prompt building like any batch.

Params: `config` (monitoring config name or YAML path), `window_hours` (overrides the config).
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import LANDING_SUPPORT_TICKETS, RETRAIN_REQUESTED


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "monitoring"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2)},
    params={
        "config": Param("support-triage", type="string", description="Monitoring config name or YAML path."),
        "window_hours": Param(
            None, type=["null", "integer"], minimum=1, description="Hours of log to assess."
        ),
    },
)
def llmops_monitor():
    def _config(params):
        from tuneops.stages.monitor import monitor_config

        return monitor_config(params["config"], params.get("window_hours"))

    @task(outlets=[LANDING_SUPPORT_TICKETS])
    def export_feedback(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tuneops.stages.monitor import export_feedback

        result = export_feedback(_config(context["params"]))
        if not result["batch_uri"]:
            raise AirflowSkipException(f"no batch of corrections to land yet: {result}")
        context["outlet_events"][LANDING_SUPPORT_TICKETS].extra = {
            "batch_uri": result["batch_uri"],
            "feedback_rows": result["rows"],
        }
        # The feedback ids stay in the lineage file: XCom carries only small things.
        return {k: v for k, v in result.items() if k != "feedback_ids"}

    @task
    def assess(**context) -> dict:
        from tuneops.stages.monitor import assess as assess_window

        # A manual run without a logical date (UI, REST API) has no data interval: the window ends now.
        window_end = context.get("data_interval_end") or pendulum.now("UTC")
        return assess_window(_config(context["params"]), window_end)

    @task
    def alert(result: dict, **context) -> list[str]:
        from tuneops.airflow.notifier import MonitoringAlert

        if not result["breaches"]:
            return []
        config = _config(context["params"])
        return MonitoringAlert(result, config.model_name, config.alerts).notify(context)

    @task(outlets=[RETRAIN_REQUESTED])
    def request_retrain(result: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["retrain"]:
            raise AirflowSkipException("no breach of a kind in retrain_on")
        extra = {
            "model_name": _config(context["params"]).model_name,
            "breaches": [b["metric"] for b in result["breaches"]],
            "window_end": result["window_end"],
            "report_uri": result["report_uri"],
        }
        context["outlet_events"][RETRAIN_REQUESTED].extra = extra
        return extra

    result = assess()
    export_feedback()
    alert(result)
    request_retrain(result)


llmops_monitor()
