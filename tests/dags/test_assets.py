"""How a DAG finds its input and its project: Param first, then the triggering events of the run's
project (its partition), then the newest event of that project."""

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tuneops.airflow.assets import (
    LANDING,
    PROMPT_DATASET,
    RETRAIN_REQUESTED,
    VALIDATED_BATCH,
    landing_requests,
    resolve_input,
    triggering_values,
    unrouted_events,
)


def _event(extra, partition_key=None, **more):
    return SimpleNamespace(extra=extra, partition_key=partition_key, **more)


def _ctx(param=None, triggering=(), inlet=(), partition=None, project=None, asset=PROMPT_DATASET):
    return {
        "params": {"dataset_uri": param, "project": project},
        "triggering_asset_events": {
            asset: [_event(*e) if isinstance(e, tuple) else _event(e) for e in triggering]
        }
        if triggering
        else {},
        "inlet_events": {asset: [_event(*e) if isinstance(e, tuple) else _event(e) for e in inlet]},
        "dag_run": SimpleNamespace(run_type="asset_triggered", partition_key=partition),
    }


def _value(ctx):
    return resolve_input(ctx, "dataset_uri", PROMPT_DATASET, "uri")


def test_param_wins_over_events():
    ctx = _ctx("/from/param", triggering=[{"uri": "/from/event"}], inlet=[{"uri": "/latest"}], project="p")
    assert _value(ctx) == {"value": "/from/param", "project": "p"}


def test_triggering_event_wins_over_the_latest_event_and_names_its_project():
    ctx = _ctx(triggering=[{"uri": "/old"}, ({"uri": "/triggering"}, "tickets")], inlet=[{"uri": "/newer"}])
    assert _value(ctx) == {"value": "/triggering", "project": "tickets"}


def test_a_partitioned_run_takes_only_its_own_projects_events():
    inlet = [({"uri": "/a", "project": "a"}, "a"), ({"uri": "/b", "project": "b"}, "b")]
    assert _value(_ctx(inlet=inlet, partition="a")) == {"value": "/a", "project": "a"}
    assert _value(_ctx(inlet=inlet, partition="b")) == {"value": "/b", "project": "b"}
    with pytest.raises(AirflowFailException, match="of project 'c'"):
        _value(_ctx(inlet=inlet, partition="c"))


def test_manual_run_without_param_takes_the_latest_event():
    ctx = _ctx(inlet=[{"uri": "/first"}, {"uri": "/latest", "project": "x"}, {}])
    assert _value(ctx) == {"value": "/latest", "project": "x"}


def test_no_input_names_the_param_and_the_asset():
    with pytest.raises(AirflowFailException, match="'dataset_uri' Param.*tuneops_prompt_dataset"):
        _value(_ctx())


def test_a_retrain_request_trains_on_its_projects_latest_prompt_dataset():
    """Monitoring's event carries no dataset: finetune falls back to the project's newest prompt dataset."""
    inlet = [({"uri": "/older", "project": "a"}, "a"), ({"uri": "/with-corrections", "project": "a"}, "a")]
    inlet.append(({"uri": "/other-project", "project": "b"}, "b"))
    ctx = _ctx(inlet=inlet, partition="a")
    ctx["triggering_asset_events"] = {RETRAIN_REQUESTED: [_event({"breaches": ["drift.label_psi"]}, "a")]}
    assert _value(ctx) == {"value": "/with-corrections", "project": "a"}


def test_every_triggering_batch_of_the_run_is_built():
    events = [({"uri": "/one", "project": "a"}, "a"), ({"uri": "/two", "project": "a"}, "a")]
    ctx = _ctx(triggering=events, partition="a", asset=VALIDATED_BATCH)
    assert triggering_values(ctx, VALIDATED_BATCH, "uri") == [
        {"value": "/one", "project": "a"},
        {"value": "/two", "project": "a"},
    ]


def test_landing_requests_one_per_batch_of_the_runs_project():
    ctx = {
        "params": {"batch_uri": None, "project": None},
        "triggering_asset_events": {
            LANDING: [
                _event({"batch_uri": "/a.jsonl"}, "a", source_dag_id="producer", source_run_id="r1"),
                _event({"batch_uri": "/a2.csv", "from_rest_api": True}, "a"),
            ]
        },
        "inlet_events": {LANDING: []},
        "dag_run": SimpleNamespace(run_type="asset_triggered", partition_key="a"),
    }
    requests = landing_requests(ctx)
    assert [(r["batch_uri"], r["project"]) for r in requests] == [("/a.jsonl", "a"), ("/a2.csv", "a")]
    assert "producer/r1" in requests[0]["source"] and "REST API" in requests[1]["source"]


def test_landing_requests_from_the_params_or_nothing_to_do():
    ctx = {
        "params": {"batch_uri": "/x.jsonl", "project": "p"},
        "triggering_asset_events": {},
        "inlet_events": {LANDING: []},
    }
    assert landing_requests(ctx)[0] | {"source": None} == {
        "batch_uri": "/x.jsonl",
        "project": "p",
        "source": None,
    }
    ctx["params"] = {"batch_uri": None, "project": None}
    with pytest.raises(
        AirflowFailException, match="'batch_uri' and 'project' Params.*partition_key=<project>"
    ):
        landing_requests(ctx)


def test_landing_events_without_a_project_are_described_for_the_check_dag():
    ctx = {
        "triggering_asset_events": {
            LANDING: [
                _event({"batch_uri": "/lost.jsonl", "from_rest_api": True}),
                _event({"batch_uri": "/ok"}, "a"),
            ]
        }
    }
    (described,) = unrouted_events(ctx)
    assert described.startswith("the REST API") and "/lost.jsonl" in described


def test_the_partition_key_decides_an_events_project():
    """What the scheduler routed the event by wins over a conflicting extra."""
    from tuneops.airflow.assets import event_project

    assert event_project(_event({"project": "b"}, "a")) == "a"
    assert event_project(_event({"project": "b"})) == "b"
    assert event_project(_event({})) is None


def test_an_event_without_a_project_is_refused_before_it_is_emitted():
    from tuneops.airflow.assets import emit

    with pytest.raises(ValueError, match="tuneops_prompt_dataset needs a project"):
        emit({"outlet_events": {}}, PROMPT_DATASET, None, uri="/x")
