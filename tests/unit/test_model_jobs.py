"""The model-job contract (``tuneops.jobs``): typed inputs published once, a command that names them,
and failures that name the job, on the local backend's subprocess."""

import pytest
from pydantic import ValidationError

from tests.support.plans import DECISION, make_choice, make_plan
from tuneops.contracts import Evaluations

CHOICE = make_choice(
    make_plan("qwen2.5-0.5b-instruct", dataset_uri="s3://elsewhere/datasets/x", output_uri="s3://elsewhere/o")
)


def _local_choice() -> dict:
    choice = CHOICE.model_dump(mode="json")
    choice["plan"]["compute"] = "local"
    return choice


def test_the_same_input_is_published_once_and_read_back_as_its_contract():
    from tuneops.core.settings import load_settings
    from tuneops.jobs import job_command, publish_input, read_input

    payload = {"choice": _local_choice()}
    uri = publish_input("evaluate", payload)
    assert publish_input("evaluate", payload) == uri and "/jobs/evaluate/" in uri
    assert read_input("evaluate", uri, load_settings()).choice == CHOICE.model_copy(
        update={"plan": CHOICE.plan.model_copy(update={"compute": "local"})}
    )
    assert job_command("evaluate", uri) == ["python", "-m", "tuneops.jobs", "evaluate", "--input", uri]


def test_an_input_that_is_not_the_jobs_contract_is_refused_naming_the_field():
    from tuneops.jobs import publish_input

    with pytest.raises(ValidationError, match="evaluations\n  Field required"):
        publish_input("register", {"choice": _local_choice(), "decision": DECISION.model_dump(mode="json")})
    with pytest.raises(ValueError, match="unknown model job 'merge'"):
        publish_input("merge", {})


def test_a_job_whose_input_cannot_be_read_exits_2_naming_it(capsys, tmp_path):
    from tuneops.jobs import main

    assert main(["evaluate", "--input", str(tmp_path / "nowhere.json")]) == 2
    err = capsys.readouterr().err
    assert (
        "the input of job evaluate" in err
        and "nowhere.json" in err
        and "is not inside the artifact store" in err
    )


def test_a_failed_job_fails_its_task_naming_the_job_and_runs_as_a_tied_subprocess(capfd):
    """The plan's dataset is outside the artifact store: the job starts, fails saying so, and the task
    names the job."""
    from tuneops.jobs import run_locally
    from tuneops.training.process import TrainerProcess

    started: list[TrainerProcess] = []
    payload = {
        "choice": _local_choice(),
        "evaluations": Evaluations({}).model_dump(mode="json"),
        "decision": DECISION.model_dump(mode="json"),
    }
    with pytest.raises(RuntimeError, match="model job register exited with code 1"):
        run_locally("register", payload, on_start=started.append)
    (process,) = started
    assert process.cmd[1:4] == ["-m", "tuneops.jobs", "register"]
    assert process.process.returncode == 1 and process.name == "model job register"
    err = capfd.readouterr().err
    assert "s3://elsewhere/" in err and "is not inside the artifact store" in err
