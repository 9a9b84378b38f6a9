"""The local trainer never outlives its task: on_kill stops its process group, SIGKILL takes it along."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.processes import alive, wait_gone
from tuneops.training.process import TrainerProcess

REPO = Path(__file__).resolve().parents[2]


# A stand-in trainer: asks for the parent-death signal as tuneops.training.train does, starts a grandchild
# (a data loader worker, say), writes both pids, and sleeps.
FAKE_TRAINER = """
import subprocess, sys, time
from tuneops.training.process import die_with_parent
die_with_parent()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(f"{{__import__('os').getpid()}} {{child.pid}}")
time.sleep(120)
"""


def _pids(path: Path, seconds: float = 30) -> tuple[int, int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count(" ") == 1:
            trainer, child = path.read_text().split()
            return int(trainer), int(child)
        time.sleep(0.05)
    raise AssertionError("the fake trainer did not start")


def test_on_kill_stops_the_trainer_and_everything_it_started(tmp_path):
    from tuneops.airflow.trainer_local import LocalTrainerOperator

    pids = tmp_path / "pids"
    operator = LocalTrainerOperator(task_id="train_local", plan={})
    trainer = TrainerProcess([sys.executable, "-c", FAKE_TRAINER.format(), str(pids)], grace_seconds=2)
    operator._started(trainer)
    failure: list[BaseException] = []
    runner = threading.Thread(target=lambda: _run_catching(trainer, failure))
    runner.start()
    trainer_pid, child_pid = _pids(pids)
    operator.on_kill()  # what Airflow calls when the task is killed from the UI or times out
    runner.join(30)
    assert wait_gone([trainer_pid, child_pid]) == []
    assert failure and "trainer exited with code" in str(failure[0]), "the task fails, it does not succeed"


def _run_catching(trainer: TrainerProcess, failure: list) -> None:
    try:
        trainer.run()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        failure.append(exc)


TASK = """
import sys
from tuneops.training.process import TrainerProcess
TrainerProcess([sys.executable, "-c", sys.argv[1], sys.argv[2]]).run()
"""


def test_a_task_process_killed_with_sigkill_takes_its_trainer_with_it(tmp_path):
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    task = subprocess.Popen([sys.executable, "-c", TASK, FAKE_TRAINER.format(), str(pids)], env=env)
    trainer_pid, child_pid = _pids(pids)
    assert alive(trainer_pid)
    os.kill(task.pid, signal.SIGKILL)  # a lost worker, the OOM killer: no on_kill, no clean-up code runs
    task.wait()
    assert wait_gone([trainer_pid]) == [], "the trainer outlived its task"
    os.kill(child_pid, signal.SIGKILL)  # the stand-in's own child is not ours to track; tidy up


def test_a_trainer_whose_task_died_before_it_started_exits_at_once(monkeypatch):
    from tuneops.training.process import PARENT_ENV

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tuneops.training.process import die_with_parent; die_with_parent(); print('ran')",
        ],
        env={**os.environ, PARENT_ENV: "1", "PYTHONPATH": str(REPO / "include")},  # pid 1 is not our parent
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "ran" not in proc.stdout


@pytest.mark.parametrize("exit_code", [0, 3])
def test_run_returns_stdout_or_names_the_exit_code(exit_code):
    trainer = TrainerProcess([sys.executable, "-c", f"print('summary'); raise SystemExit({exit_code})"])
    if exit_code == 0:
        assert trainer.run().strip() == "summary"
    else:
        with pytest.raises(RuntimeError, match="trainer exited with code 3"):
            trainer.run()
