"""
### llmops_validate_data

Validates raw batches landed by data teams against their project's dataset contract (Great
Expectations) and publishes each to `validated/<dataset>/<batch hash>` in the artifact store.

**Triggered by** events on the landing Asset `tuneops_landing` with `partition_key` = the
project and `extra={"batch_uri": "<file, folder or s3:// URI>"}`: one run per project, and every
batch of that project in the run is validated by its own mapped `validate` task with the
project's config, so batches of several projects landing at once never mix. By hand: the
`batch_uri` and `project` Params. An unknown project fails its task naming it; an event without
a partition key is caught by `llmops_landing_check`.

**Emits** `tuneops_validated_batch` per accepted batch, partitioned by project, with
`extra={"uri", "dataset", "project"}`. A batch that breaks its contract fails its task with
every failed expectation named (and the notifier sends the rejection); nothing is published.
"""

import pendulum
from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from tuneops.airflow.assets import LANDING, VALIDATED_BATCH, emit, landing_requests
from tuneops.airflow.notifier import StageFailureNotifier


@dag(
    schedule=PartitionedAssetTimetable(assets=LANDING),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "data"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "batch_uri": Param(
            None, type=["null", "string"], description="File or folder of the raw batch (path or s3://)."
        ),
        "project": Param(
            None, type=["null", "string"], description="Project of the batch (configs/projects/<name>.yaml)."
        ),
    },
)
def llmops_validate_data():
    @task(inlets=[LANDING])
    def resolve_batches(**context) -> list[dict]:
        return landing_requests(context)

    @task(
        outlets=[VALIDATED_BATCH],
        map_index_template="{{ request['project'] }}: {{ request['batch_uri'] }}",
        on_failure_callback=StageFailureNotifier("batch not validated"),
    )
    def validate(request: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.config import ConfigError
        from tuneops.core.landing import OutsideLandingRoots
        from tuneops.data.validation import BatchRejected
        from tuneops.stages.validate_data import validate as validate_batch

        if not request["batch_uri"]:
            raise AirflowFailException(
                f"{request['source']} has no 'batch_uri' in its extra: nothing to validate"
            )
        try:
            result = validate_batch(request["batch_uri"], request["project"])
        except (BatchRejected, OutsideLandingRoots, ConfigError, ValueError) as exc:
            # The same batch fails the same way: no retry. The message names the source event.
            raise AirflowFailException(f"{exc}\n(from {request['source']})") from exc
        emit(context, VALIDATED_BATCH, result["project"], uri=result["uri"], dataset=result["dataset"])
        return result

    validate.expand(request=resolve_batches())


llmops_validate_data()
