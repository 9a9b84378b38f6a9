"""The Airflow Assets that chain the DAGs: declared once, here.

Producers attach the published URI to their asset event (``extra``); consumers read it from
the event that triggered them, or from the latest event when triggered by hand without
the Param. This is the only tuneops module that imports Airflow.
"""

from __future__ import annotations

from airflow.sdk import Asset

#: A raw batch landed by a data team. Post an event with ``extra={"batch_uri": ...}``.
LANDING_SUPPORT_TICKETS = Asset(
    name="tuneops_landing_support_tickets", uri="tuneops://landing/support_tickets"
)
#: A batch that passed validation; ``extra={"uri": ...}`` is its validated folder.
VALIDATED_BATCH = Asset(name="tuneops_validated_batch", uri="tuneops://validated")
#: A published prompt dataset version; ``extra={"uri", "version"}``.
PROMPT_DATASET = Asset(name="tuneops_prompt_dataset", uri="tuneops://datasets")
#: The registry's champion moved; ``extra={"model_name", "version"}``.
CHAMPION_MODEL = Asset(name="tuneops_champion_model", uri="tuneops://registry/champion")

#: Monitoring found drift or a quality drop worth retraining for; ``extra={"model_name", "breaches", "report_uri"}``.
RETRAIN_REQUESTED = Asset(name="tuneops_retrain_requested", uri="tuneops://monitoring/retrain")

#: The one-slot Airflow pool every alias move runs in (create it with `airflow pools set`).
PROMOTION_POOL = "tuneops_promotion"


def resolve_input(context, param: str, asset: Asset, extra_key: str):
    """The run's input: the DAG-run Param if set, else the triggering asset event, else the latest event.

    Raises AirflowFailException (no retry can help) naming the Param when none provides a value,
    except in a run of the time schedule, which has nothing to do yet and is skipped
    (AirflowSkipException): a fresh deployment's weekly run before the first event is not a failure.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    value = context["params"].get(param)
    if value:
        return value
    triggering = context["triggering_asset_events"].get(asset, [])
    events = list(triggering) or list(context["inlet_events"][asset])
    for event in reversed(events):
        if event.extra and event.extra.get(extra_key):
            return event.extra[extra_key]
    dag_run = context.get("dag_run")
    if dag_run is not None and str(getattr(dag_run.run_type, "value", dag_run.run_type)) == "scheduled":
        raise AirflowSkipException(f"scheduled run: no event on asset '{asset.name}' yet, nothing to process")
    raise AirflowFailException(
        f"no input: set the '{param}' Param when triggering, or emit an event on asset "
        f"'{asset.name}' with extra {{'{extra_key}': ...}}"
    )
