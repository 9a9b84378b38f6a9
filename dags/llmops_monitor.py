"""
### llmops_monitor

Every hour, reads the last window of the inference log (written by serving and
`tuneops generate`) and computes basic health statistics: request count, prompt size,
latency p50/p95 and the empty-response rate. Stores them under `monitoring/` in the
artifact store and logs them to MLflow so trends are visible.

Params: `window_hours` (default 1).
"""

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "monitoring"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2)},
    params={"window_hours": Param(1, type="integer", minimum=1, description="Hours of inference log to read.")},
)
def llmops_monitor():
    @task
    def inference_stats(**context) -> dict:
        from tuneops.monitor import run_monitor

        window_end = context["data_interval_end"] or pendulum.now("UTC")
        return run_monitor(window_end, context["params"]["window_hours"])

    inference_stats()


llmops_monitor()
