"""
### llmops_build_prompt_dataset

Turns validated batches into a content-addressed HF `datasets` version at
`datasets/<dataset>/<version>`: the dataset config's accepted batches (all of them, or a
time window ending at this run's batch; `accumulate` in the config) plus the pinned golden
set, cleaned (Unicode/whitespace normalisation, typed PII redaction, token-length bounds
with the model's tokenizer, exact and MinHash near-duplicate removal, no validation/test/
golden example in train), rendered through the versioned prompt template and split by a
hash of the record id. The manifest counts every dropped row by reason. Same inputs give
the same version, and a rerun reuses it; a new version is logged to MLflow as a dataset
input (`mlflow.data`, digest = version).

**Triggered by** `tuneops_validated_batch`, or by hand with the `validated_uri` Param.

**Emits** `tuneops_prompt_dataset` with `extra={"uri", "version"}`.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import PROMPT_DATASET, VALIDATED_BATCH, resolve_input


@dag(
    schedule=[VALIDATED_BATCH],
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
        "dataset": Param("support_tickets", type="string", description="Dataset config name or YAML path."),
    },
)
def llmops_build_prompt_dataset():
    @task(inlets=[VALIDATED_BATCH])
    def resolve_batch(**context) -> str:
        return resolve_input(context, "validated_uri", VALIDATED_BATCH, "uri")

    @task(outlets=[PROMPT_DATASET])
    def build(validated_uri: str, **context) -> dict:
        from tuneops.stages.build_prompt_dataset import build_prompts

        result = build_prompts([validated_uri], context["params"]["dataset"])
        context["outlet_events"][PROMPT_DATASET].extra = {"uri": result["uri"], "version": result["version"]}
        return result

    build(resolve_batch())


llmops_build_prompt_dataset()
