"""How a DAG finds its input: Param first, then the triggering asset event, then the latest event."""

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from tuneops.airflow.assets import PROMPT_DATASET, RETRAIN_REQUESTED, resolve_input


def _ctx(param=None, triggering=(), inlet=()):
    return {
        "params": {"dataset_uri": param},
        "triggering_asset_events": {PROMPT_DATASET: [SimpleNamespace(extra=e) for e in triggering]}
        if triggering
        else {},
        "inlet_events": {PROMPT_DATASET: [SimpleNamespace(extra=e) for e in inlet]},
    }


def test_param_wins_over_events():
    ctx = _ctx("/from/param", triggering=[{"uri": "/from/event"}], inlet=[{"uri": "/latest"}])
    assert resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri") == "/from/param"


def test_triggering_event_wins_over_the_latest_event():
    ctx = _ctx(triggering=[{"uri": "/old"}, {"uri": "/triggering"}], inlet=[{"uri": "/newer"}])
    assert resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri") == "/triggering"


def test_manual_run_without_param_takes_the_latest_event():
    ctx = _ctx(inlet=[{"uri": "/first"}, {"uri": "/latest"}, {}])
    assert resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri") == "/latest"


def test_no_input_names_the_param_and_the_asset():
    with pytest.raises(AirflowFailException, match="'dataset_uri' Param.*tuneops_prompt_dataset"):
        resolve_input(_ctx(), "dataset_uri", PROMPT_DATASET, "uri")


@pytest.mark.parametrize("run_type", ["manual", "asset_triggered"])
def test_a_triggered_run_without_input_fails(run_type):
    ctx = {**_ctx(), "dag_run": SimpleNamespace(run_type=run_type)}
    with pytest.raises(AirflowFailException):
        resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri")


def test_the_weekly_run_before_any_dataset_is_skipped_not_failed():
    ctx = {**_ctx(), "dag_run": SimpleNamespace(run_type="scheduled")}
    with pytest.raises(AirflowSkipException, match="no event on asset 'tuneops_prompt_dataset' yet"):
        resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri")


def test_a_retrain_request_trains_on_the_latest_prompt_dataset():
    """Monitoring's event carries no dataset: finetune falls back to the newest prompt dataset."""
    ctx = _ctx(inlet=[{"uri": "/older"}, {"uri": "/with-corrections"}])
    ctx["triggering_asset_events"] = {
        RETRAIN_REQUESTED: [SimpleNamespace(extra={"breaches": ["drift.label_psi"]})]
    }
    assert resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri") == "/with-corrections"
