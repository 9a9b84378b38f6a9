"""
### llmops_validate_data

Validates a raw batch landed by a data team against its dataset contract (Great
Expectations) and publishes it to `validated/<dataset>/<batch hash>` in the artifact store.

**Triggered by** an event on the landing Asset `tuneops_landing_support_tickets` with
`extra={"batch_uri": "<file, folder or s3:// URI>"}`, or by hand with the `batch_uri` Param.

**Emits** `tuneops_validated_batch` with `extra={"uri": ...}`. A batch that breaks its
contract fails the run with every failed expectation named; nothing is published.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import LANDING_SUPPORT_TICKETS, VALIDATED_BATCH, resolve_input


@dag(
    schedule=[LANDING_SUPPORT_TICKETS],
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
        "dataset": Param("support_tickets", type="string", description="Dataset config name or YAML path."),
    },
)
def llmops_validate_data():
    @task(inlets=[LANDING_SUPPORT_TICKETS])
    def resolve_batch(**context) -> str:
        return resolve_input(context, "batch_uri", LANDING_SUPPORT_TICKETS, "batch_uri")

    @task(outlets=[VALIDATED_BATCH])
    def validate(batch_uri: str, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.core.landing import OutsideLandingRoots
        from tuneops.data.validation import BatchRejected
        from tuneops.stages.validate_data import validate as validate_batch

        try:
            result = validate_batch(batch_uri, context["params"]["dataset"])
        except (BatchRejected, OutsideLandingRoots) as exc:
            raise AirflowFailException(str(exc)) from exc  # the same batch fails the same way: no retry
        context["outlet_events"][VALIDATED_BATCH].extra = {"uri": result["uri"], "dataset": result["dataset"]}
        return result

    validate(resolve_batch())


llmops_validate_data()
