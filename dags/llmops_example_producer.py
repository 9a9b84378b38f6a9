"""
### llmops_example_producer

An example of a data team's DAG handing a raw batch to the platform: it writes a batch of
sample support tickets to `<TUNEOPS_HOME>/landing/support_tickets/batch-<ts_nodash>.jsonl`
and emits the landing Asset `tuneops_landing` for the project `support_tickets` (its partition key)
with `extra={"batch_uri": "<that file>"}`, which triggers `llmops_validate_data`.

A real producer keeps only the last two lines of its task: land the file, attach its URI.

Params: `rows` (default 200) and `seed` (default 0); the same seed gives the same tickets.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import LANDING, emit


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llmops", "data", "example"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "rows": Param(200, type="integer", minimum=1, description="Tickets in the batch."),
        "seed": Param(0, type="integer", description="Seed of the ticket generator."),
    },
)
def llmops_example_producer():
    @task(outlets=[LANDING])
    def land_batch(**context) -> str:
        from tuneops.core.sample_data import write_sample_batch
        from tuneops.core.settings import load_settings

        # A run triggered without a logical date (the API's and CLI's default) has no ts_nodash.
        stamp = context.get("ts_nodash") or context["dag_run"].run_after.strftime("%Y%m%dT%H%M%S")
        dest = load_settings().home / "landing" / "support_tickets" / f"batch-{stamp}.jsonl"
        path = write_sample_batch(dest, context["params"]["rows"], context["params"]["seed"])
        emit(context, LANDING, "support_tickets", batch_uri=str(path))
        return str(path)

    land_batch()


llmops_example_producer()
