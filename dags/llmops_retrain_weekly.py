"""
### llmops_retrain_weekly

Every Monday at 04:00 UTC, requests a retrain of every project that has a prompt dataset:
one `tuneops_retrain_requested` event per project (its partition key), so `llmops_finetune`
runs once per project on that project's latest prompt dataset, which by then holds the week's
landed corrections. The `projects` Param limits it to some projects.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import RETRAIN_REQUESTED


@dag(
    schedule="0 4 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "training"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "projects": Param(
            None,
            type=["null", "array"],
            description="Projects to retrain (default: every one with a prompt dataset).",
        ),
    },
)
def llmops_retrain_weekly():
    @task(outlets=[RETRAIN_REQUESTED])
    def request_retrains(**context) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        from tuneops.stages.finetune import projects_to_retrain

        projects = projects_to_retrain(context["params"]["projects"])
        if not projects:
            raise AirflowSkipException("no project has a prompt dataset yet: nothing to retrain")
        outlet = context["outlet_events"][RETRAIN_REQUESTED]
        outlet.extra = {"reason": "weekly retrain"}
        outlet.add_partitions(projects)
        return projects

    request_retrains()


llmops_retrain_weekly()
