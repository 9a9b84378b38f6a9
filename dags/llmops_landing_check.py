"""
### llmops_landing_check

Catches landing events that name no project. `llmops_validate_data` is partitioned by project,
and Airflow starts a partitioned DAG only for events that carry a partition key: an event on
`tuneops_landing` without one would otherwise start nothing (the scheduler writes only an
audit-log line). Such events, and only those, trigger this DAG, whose run fails naming each
event and the fix: post it again with `partition_key` set to the project.
"""

import pendulum
from airflow.sdk import dag, task

from tuneops.airflow.assets import LANDING, unrouted_events
from tuneops.airflow.notifier import StageFailureNotifier


@dag(
    schedule=[LANDING],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llmops", "data"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
)
def llmops_landing_check():
    @task(inlets=[LANDING], on_failure_callback=StageFailureNotifier("landing event without a project"))
    def refuse_unrouted(**context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.config import list_projects
        from tuneops.core.settings import load_settings

        events = "\n  - ".join(unrouted_events(context) or ["(the run's event was not found)"])
        known = ", ".join(list_projects(load_settings().project_dirs))
        raise AirflowFailException(
            f"landing event(s) without a project, so no validation ran:\n  - {events}\n"
            f"Post each again with partition_key set to its project ({known}), e.g. "
            '{"asset_id": ..., "partition_key": "<project>", "extra": {"batch_uri": ...}}; '
            "`tuneops init-dataset` creates a project"
        )

    refuse_unrouted()


llmops_landing_check()
