"""The local trainer (and every model job) as a child process that never outlives the task that started it.

``TrainerProcess`` starts ``python -m tuneops.training.train ...`` in a process group of its own and
tells it its parent's pid; the trainer (``die_with_parent``, called first thing by
``tuneops.training.train.main``) asks Linux to SIGKILL it when that parent dies (``PR_SET_PDEATHSIG``),
so a task process killed with SIGKILL (a lost worker, the OOM killer) takes its trainer with
it. A task that is told to stop (Airflow's ``on_kill``: killed from the UI, timed out) calls
``terminate``, which stops the whole group: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)
PARENT_ENV = "TUNEOPS_TRAINER_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the trainer: exit with the process named by ``TUNEOPS_TRAINER_PARENT_PID`` (Linux only).

    Does nothing without the variable (a pod, a hand-run command). If the parent is already gone
    by the time the request is made (it died while this process started), exits at once.
    """
    expected = os.environ.pop(PARENT_ENV, None)
    if not expected or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): the trainer may outlive its task", ctypes.get_errno()
        )
        return
    if os.getppid() != int(expected):
        log.error("the task that started this trainer (pid %s) is gone; exiting", expected)
        os._exit(1)


class TrainerProcess:
    """One trainer subprocess, tied to this process: ``run`` it, ``terminate`` it from ``on_kill``."""

    def __init__(
        self,
        cmd: list[str],
        grace_seconds: float = 20.0,
        env: Mapping[str, str] | None = None,
        name: str = "trainer",
    ):
        """``env``: the trainer's environment (e.g. ``Settings.child_env()``); default this process's.
        ``name`` is what logs and errors call it (a model job passes its own)."""
        self.cmd = cmd
        self.name = name
        self.grace_seconds = grace_seconds
        self.env = env
        self.process: subprocess.Popen | None = None

    def run(self) -> str:
        """Start the trainer, wait for it and return its stdout; its stderr (the log) passes through.

        Raises RuntimeError for a non-zero exit. An exception while waiting (the task is being torn
        down) stops the trainer before it propagates.
        """
        log.info("running %s", " ".join(self.cmd))
        env = {**(os.environ if self.env is None else self.env), PARENT_ENV: str(os.getpid())}
        self.process = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        log.info("%s pid %d (process group %d)", self.name, self.process.pid, self.process.pid)
        try:
            out, _ = self.process.communicate()
        except BaseException:
            self.terminate()
            raise
        if self.process.returncode != 0:
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}; its log is above")
        return out

    def terminate(self) -> None:
        """Stop the trainer's whole process group: SIGTERM, then SIGKILL after ``grace_seconds``."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        log.warning("stopping %s pid %d and its process group", self.name, proc.pid)
        for sig, wait in ((signal.SIGTERM, self.grace_seconds), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
