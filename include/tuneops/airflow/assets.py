"""The Airflow Assets that chain the DAGs, declared once here, and how a run finds its input.

**Projects travel as partitions.** Every event on every tuneops Asset carries its project as
its *partition key* (Airflow 3.2+ asset partitions) and in ``extra["project"]``, and the DAGs
they trigger are scheduled with ``PartitionedAssetTimetable``: the scheduler starts one run per
project (the run's ``partition_key``), so two projects landing at the same time never share a
run, an input or a recipe, and every event of a project that arrives before its run starts is
in that run (its pending partition collects them; ``llmops_validate_data`` validates each).

A data team posts a landing event with ``partition_key`` = the project and
``extra={"batch_uri": ...}``. A landing event without a partition key reaches no partitioned DAG
(the scheduler only writes an audit-log line), so ``llmops_landing_check`` consumes exactly
those and fails, naming the event and the fix. This is the only tuneops module besides the
operators and notifiers that imports Airflow.
"""

from __future__ import annotations

from airflow.sdk import Asset

#: A raw batch landed by a data team: ``partition_key`` = project, ``extra={"batch_uri": ...}``.
LANDING = Asset(name="tuneops_landing", uri="tuneops://landing")
#: A batch that passed validation; partition = project, ``extra={"uri", "dataset", "project"}``.
VALIDATED_BATCH = Asset(name="tuneops_validated_batch", uri="tuneops://validated")
#: A published prompt dataset version; partition = project, ``extra={"uri", "version", "project"}``.
PROMPT_DATASET = Asset(name="tuneops_prompt_dataset", uri="tuneops://datasets")
#: The registry's champion moved; partition = project, ``extra={"model_name", "version", "project"}``.
CHAMPION_MODEL = Asset(name="tuneops_champion_model", uri="tuneops://registry/champion")
#: Retrain this project (monitoring found drift, or the weekly schedule); partition = project,
#: ``extra={"project", "model_name", "breaches", "report_uri"}``.
RETRAIN_REQUESTED = Asset(name="tuneops_retrain_requested", uri="tuneops://monitoring/retrain")

#: The one-slot Airflow pool every alias move runs in (create it with `airflow pools set`).
PROMOTION_POOL = "tuneops_promotion"


def emit(context, asset: Asset, project: str | None, **extra) -> None:
    """Attach this task's event on ``asset``: ``extra`` plus the project, partitioned by the project.

    Raises ValueError without a project: an unpartitioned event would start no partitioned DAG.
    """
    if not project:
        raise ValueError(
            f"an event on {asset.name} needs a project (its partition key), or no DAG downstream would run; "
            "name the project (the 'project' Param)"
        )
    outlet = context["outlet_events"][asset]
    outlet.extra = {**extra, "project": project}
    outlet.add_partitions(project)


def run_project(context) -> str | None:
    """The project this run is for: the ``project`` Param, else the run's partition key, else None."""
    dag_run = context.get("dag_run")
    return context["params"].get("project") or getattr(dag_run, "partition_key", None) or None


def event_project(event) -> str | None:
    """The event's project: its partition key (what the scheduler routed it by), else ``extra["project"]``."""
    return getattr(event, "partition_key", None) or (event.extra or {}).get("project") or None


def resolve_input(context, param: str, asset: Asset, extra_key: str) -> dict:
    """The run's input ``{"value", "project"}``: the DAG-run Param if set, else the newest triggering
    asset event of this run's project, else the newest such event there is.

    ``project`` is the run's (``run_project``), else the event's; None when neither names one (the
    stage then reads it from the input's own metadata). Raises AirflowFailException (no retry can
    help) naming the Param when nothing provides a value.
    """
    from airflow.sdk.exceptions import AirflowFailException

    project = run_project(context)
    value = context["params"].get(param)
    if value:
        return {"value": value, "project": project}
    events = _events(context, asset, project)
    for event in reversed(events):
        if event.extra and event.extra.get(extra_key):
            return {"value": event.extra[extra_key], "project": project or event_project(event)}
    of = f" of project '{project}'" if project else ""
    raise AirflowFailException(
        f"no input{of}: set the '{param}' Param when triggering, or emit an event on asset "
        f"'{asset.name}' with partition_key=<project> and extra {{'{extra_key}': ...}}"
    )


def triggering_values(context, asset: Asset, extra_key: str) -> list[dict]:
    """Every triggering event's ``{"value", "project"}`` (several batches of one project can share a run)."""
    project = run_project(context)
    return [
        {"value": e.extra[extra_key], "project": project or event_project(e)}
        for e in _triggering(context, asset, project)
        if e.extra and e.extra.get(extra_key)
    ]


def _triggering(context, asset: Asset, project: str | None) -> list:
    events = list(context["triggering_asset_events"].get(asset, []))
    return [e for e in events if project is None or event_project(e) in (None, project)]


def _events(context, asset: Asset, project: str | None) -> list:
    """This run's triggering events on ``asset`` (of its project), else every event on it (of its project)."""
    triggering = _triggering(context, asset, project)
    if triggering:
        return triggering
    return [e for e in context["inlet_events"][asset] if project is None or event_project(e) == project]


def landing_requests(context) -> list[dict]:
    """What ``llmops_validate_data`` validates: ``[{"batch_uri", "project", "source"}]``, one per batch.

    The ``batch_uri`` Param (with the ``project`` Param) when set; else every triggering event of
    the run's project (its partition); else the newest event on ``LANDING`` (a run triggered by
    hand). Whether each names a batch and a known project is checked per request, so one bad
    event does not stop the others.
    """
    from airflow.sdk.exceptions import AirflowFailException

    params = context["params"]
    if params.get("batch_uri"):
        return [{"batch_uri": params["batch_uri"], "project": run_project(context), "source": "the Params"}]
    project = run_project(context)
    events = _triggering(context, LANDING, project) or _events(context, LANDING, project)[-1:]
    if not events:
        raise AirflowFailException(
            f"no input: set the 'batch_uri' and 'project' Params when triggering, or emit an event on asset "
            f"'{LANDING.name}' with partition_key=<project> and extra {{'batch_uri': ...}}"
        )
    return [
        {
            "batch_uri": (e.extra or {}).get("batch_uri"),
            "project": project or event_project(e),
            "source": f"asset event on {LANDING.name} from {_source(e)}",
        }
        for e in events
    ]


def unrouted_events(context) -> list[str]:
    """The landing events of this run that name no project (``llmops_landing_check``), described."""
    return [
        f"{_source(e)}: extra {dict(e.extra or {})}"
        for e in context["triggering_asset_events"].get(LANDING, [])
        if not getattr(e, "partition_key", None)
    ]


def _source(event) -> str:
    if getattr(event, "source_dag_id", None):
        return f"{event.source_dag_id}/{event.source_run_id}"
    return "the REST API" if (event.extra or {}).get("from_rest_api") else "an unknown producer"
