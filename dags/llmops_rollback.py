"""
### llmops_rollback

Moves the registry's `champion` alias back to an earlier version when the current one
misbehaves in production. Trigger it by hand with the model name, the version to restore
(empty: the `previous_champion` alias) and a reason.

The demoted version becomes `previous_champion`. Who triggered the rollback, when and why
are recorded as tags on both versions. It runs in the one-slot `tuneops_promotion` pool, so
it never interleaves with a promotion, and emits `tuneops_champion_model` so serving picks
up the restored version.
"""

import pendulum
from airflow.sdk import Param, dag, task

from tuneops.airflow.assets import CHAMPION_MODEL, PROMOTION_POOL, emit


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llmops", "registry"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "model_name": Param(
            "tuneops-support-triage", type="string", minLength=1, description="Registered model name."
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Version to make champion again; empty restores the previous_champion alias.",
        ),
        "reason": Param("", type="string", minLength=3, description="Why; recorded on both versions."),
    },
)
def llmops_rollback():
    @task(pool=PROMOTION_POOL, outlets=[CHAMPION_MODEL])
    def rollback(**context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tuneops.stages.rollback import rollback_champion

        params = context["params"]
        who = context["dag_run"].triggering_user_name or "unknown (no triggering user)"
        version = None if params["version"] is None else str(params["version"])
        try:
            result = rollback_champion(params["model_name"], version, who, params["reason"])
        except ValueError as exc:  # bad input: retrying cannot help
            raise AirflowFailException(str(exc)) from exc
        if result["project"]:  # deployment follows the project's model (the event's partition)
            emit(
                context,
                CHAMPION_MODEL,
                result["project"],
                model_name=result["name"],
                version=result["version"],
            )
        else:
            import logging

            logging.getLogger("airflow.task").warning(
                "no project registers %s: llmops_deploy does not follow this rollback; trigger it with "
                "model_name and version",
                result["name"],
            )
        return result

    rollback()


llmops_rollback()
