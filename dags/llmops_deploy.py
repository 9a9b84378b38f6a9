"""
### llmops_deploy

Rolls a new champion out to serving. Scheduled on `tuneops_champion_model` (every
promotion or rollback), one run per project (the event's partition key), or triggered by hand
with `model_name` and `version`. The project's recipe and safety suite apply unless the
`recipe` Param names another recipe.

1. **compress** (a model job, `python -m tuneops.jobs compress`, run as a subprocess or on a pod
   shaped by the recipe's compute, like training): gates the recipe's quantized variant
   (`compression.variant`, int8 on CPU)
   against the merged model on the same test, golden and safety examples; no gated metric
   may drop more than `compression.max_quality_loss`. The side-by-side report (size,
   latency, quality) goes to `compression/<model>/v<version>/`; the version is tagged with
   the verdict. The variant to serve is the quantized one only when it passed.
2. **render**: the serving Deployment + Service (`configs/kubernetes/serving.yaml`) for that
   version and variant, validated against the Kubernetes schema and stored under `deploy/`.
3. **apply**: creates or patches them through the Airflow connection `tuneops_kubernetes`
   (a Kubernetes connection); skipped when that connection is not defined, for laptops.

A local `tuneops serve` needs none of this: it follows the alias by itself.
"""

import pendulum
from airflow.sdk import Param, PartitionedAssetTimetable, dag, task

from tuneops.airflow.assets import CHAMPION_MODEL
from tuneops.airflow.model_job import ModelJobOperator

KUBE_CONNECTION = "tuneops_kubernetes"


@dag(
    schedule=PartitionedAssetTimetable(assets=CHAMPION_MODEL),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["llmops", "serving"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "model_name": Param(
            None, type=["null", "string"], description="Registered model (default: the event's)."
        ),
        "version": Param(
            None, type=["null", "string"], description="Version to deploy (default: the event's)."
        ),
        "recipe": Param(
            None,
            type=["null", "string"],
            description="Recipe whose eval and compression settings apply (default: the project's).",
        ),
        "variant": Param(
            "auto", enum=["auto", "merged", "int8"], description="auto: int8 when its gate passed."
        ),
        "image": Param(
            None,
            type=["null", "string"],
            description="Serving image (default: TUNEOPS_SERVING_IMAGE); another one only where "
            "TUNEOPS_ALLOWED_OVERRIDES allows serving.image.",
        ),
        "namespace": Param(
            None,
            type=["null", "string"],
            description="Namespace (default: TUNEOPS_SERVING_NAMESPACE); another one only where "
            "TUNEOPS_ALLOWED_OVERRIDES allows serving.namespace.",
        ),
        "replicas": Param(1, type="integer", minimum=1),
        "gpu": Param(True, type="boolean", description="Request an NVIDIA GPU per pod."),
    },
)
def llmops_deploy():
    @task(inlets=[CHAMPION_MODEL])
    def resolve_champion(**context) -> dict:
        from tuneops.airflow.assets import resolve_input

        params = context["params"]
        if params["model_name"] and not params["version"]:  # that model's champion, not another event's
            from tuneops.stages.deploy import champion_version

            return champion_version(params["model_name"], params.get("project"))
        model = resolve_input(context, "model_name", CHAMPION_MODEL, "model_name")
        version = resolve_input(context, "version", CHAMPION_MODEL, "version")
        return {"model_name": model["value"], "version": str(version["value"]), "project": model["project"]}

    @task
    def plan_compression(champion: dict, **context) -> dict:
        from tuneops.stages.deploy import plan_compression

        params = context["params"]
        job = plan_compression(
            champion["model_name"],
            champion["version"],
            params["variant"],
            params["recipe"],
            project=champion["project"],
        )
        return job.model_dump(mode="json")

    @task
    def render(choice: dict, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.config import OverrideRefused
        from tuneops.stages.deploy import render_deployment

        p = context["params"]
        try:
            return render_deployment(choice, p["image"], p["namespace"], p["replicas"], p["gpu"])
        except OverrideRefused as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def apply(rendered: dict) -> list[str]:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowSkipException

        from tuneops.stages.deploy import apply_deployment

        try:
            BaseHook.get_connection(KUBE_CONNECTION)
        except Exception as exc:
            raise AirflowSkipException(
                f"no cluster configured (Airflow connection {KUBE_CONNECTION!r}); the manifest is at "
                f"{rendered['manifest_uri']}"
            ) from exc
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return apply_deployment(rendered["manifest_uri"], KubernetesHook(conn_id=KUBE_CONNECTION).api_client)

    # A model job on the recipe's compute (subprocess or pod, tuneops.airflow.model_job): the worker loads no weights.
    compress = ModelJobOperator(
        task_id="compress", job="compress", payload=plan_compression(resolve_champion())
    )
    apply(render(compress.output))


llmops_deploy()
