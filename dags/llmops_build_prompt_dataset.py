"""
### llmops_build_prompt_dataset

Turns a project's validated batches into a content-addressed HF `datasets` version at
`datasets/<dataset>/<version>`: the dataset config's accepted batches (all of them, or a
time window ending at this run's batch; `accumulate` in the config) plus the pinned golden
set, cleaned (Unicode/whitespace normalisation, typed PII redaction, end-of-text markers,
token-length bounds with the model's tokenizer, exact and MinHash near-duplicate removal, no
validation/test/golden example in train), rendered through the versioned prompt template and
split by a hash of the record id. The manifest counts every dropped row by reason. Same inputs
give the same version, and a rerun reuses it; a new version is logged to MLflow as a dataset
input (`mlflow.data`, digest = version).

**Triggered by** `tuneops_validated_batch`, one run per project (the event's partition key);
a run takes every validated batch of its project that triggered it. By hand: the
`validated_uri` Param (and optionally `project`; else the batch's dataset decides).

**Emits** `tuneops_prompt_dataset`, partitioned by project, with `extra={"uri", "version", "project"}`.
"""

import pendulum
from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from tuneops.airflow.assets import PROMPT_DATASET, VALIDATED_BATCH, emit, resolve_input, triggering_values


@dag(
    schedule=PartitionedAssetTimetable(assets=VALIDATED_BATCH),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "data"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "validated_uri": Param(
            None, type=["null", "string"], description="URI of a validated batch in the artifact store."
        ),
        "project": Param(
            None,
            type=["null", "string"],
            description="Project (default: the run's partition, or the batch's).",
        ),
    },
)
def llmops_build_prompt_dataset():
    @task(inlets=[VALIDATED_BATCH])
    def resolve_batches(**context) -> dict:
        given = (
            []
            if context["params"].get("validated_uri")
            else triggering_values(context, VALIDATED_BATCH, "uri")
        )
        if not given:
            given = [resolve_input(context, "validated_uri", VALIDATED_BATCH, "uri")]
        projects = sorted({g["project"] for g in given if g["project"]})
        return {"uris": [g["value"] for g in given], "project": projects[0] if len(projects) == 1 else None}

    @task(outlets=[PROMPT_DATASET])
    def build(batches: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.config import ConfigError
        from tuneops.stages.build_prompt_dataset import build_prompts

        try:
            result = build_prompts(batches["uris"], batches["project"])
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        emit(context, PROMPT_DATASET, result["project"], uri=result["uri"], version=result["version"])
        return result

    build(resolve_batches())


llmops_build_prompt_dataset()
