"""A real Airflow 3 deployment on loopback, for tests: API server, scheduler, DAG processor, triggerer.

Each component runs as its own process group with its own log, on its own metadata database on
the local PostgreSQL (created by ``start()``, dropped by ``stop()``), with a private AIRFLOW_HOME
and a private TUNEOPS_HOME. Tests drive it through the REST API
only, with a JWT for an admin (simple or FAB auth manager) whose password is generated per stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from tests.integration.postgres import FreshDatabase
from tuneops.airflow.assets import PROMOTION_POOL

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN = "admin"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the component gets SIGTERM if pytest itself is killed, so no stack outlives a run."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class AirflowStack:
    """Start with ``start()``, always ``stop()``; ``api`` is a requests session carrying the admin's JWT."""

    def __init__(
        self,
        root: Path,
        share_artifacts: bool = False,
        celery_workers: int = 0,
        auth_manager: str = "simple",
        env: dict[str, str] | None = None,
    ):
        """``share_artifacts``: use the test session's TUNEOPS_HOME and MLflow instead of fresh ones (the
        Airflow metadata DB stays private), so runs can reuse what earlier tests published.

        ``celery_workers``: run the CeleryExecutor with that many workers (one task slot each) on the
        local Redis as broker and the stack's PostgreSQL database as result backend, instead of the
        LocalExecutor. Each worker stamps its task instances with its own hostname (``worker<i>``).

        ``auth_manager``: ``"simple"`` (Airflow's local-use default) or ``"fab"``, the production
        auth manager the compose file and Helm values use, with the admin created by ``airflow users
        create``. ``env``: variables added to (or, with a None value, removed from) every component's
        environment, after the stack's own.
        """
        self.airflow_home = root / "airflow"
        self.tuneops_home = Path(os.environ["TUNEOPS_HOME"]) if share_artifacts else root / "tuneops"
        self.logs = root / "component-logs"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = requests.Session()
        self.admin_password = secrets.token_urlsafe(16)
        self._procs: dict[str, subprocess.Popen] = {}
        self.database = FreshDatabase("tuneops_airflow")
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # Only DAGs the test unpauses run; the training DAGs must stay off.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database.url(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            # Task processes report to this URL; its default (port 8080) refuses them.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            # The scheduler signs task tokens that the API server checks: one secret for both.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            "TUNEOPS_HOME": str(self.tuneops_home),
            "MLFLOW_TRACKING_URI": (
                os.environ["MLFLOW_TRACKING_URI"]
                if share_artifacts
                else f"sqlite:///{self.tuneops_home / 'mlflow.db'}"
            ),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "False",
            "TOKENIZERS_PARALLELISM": "false",
        }
        for inherited in ("MLFLOW_REGISTRY_URI", "TUNEOPS_ARTIFACT_ROOT", "AIRFLOW_CONFIG"):
            self.env.pop(inherited, None)
        if auth_manager == "fab":
            self.env["AIRFLOW__CORE__AUTH_MANAGER"] = FAB_AUTH_MANAGER
            self.env["AIRFLOW__API__SECRET_KEY"] = secrets.token_urlsafe(32)
        elif auth_manager != "simple":
            raise ValueError(f"auth_manager must be 'simple' or 'fab', not {auth_manager!r}")
        self.auth_manager = auth_manager
        for key, value in (env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.components = {name: [str(BIN / "airflow"), name] for name in COMPONENTS}
        self.worker_env: dict[str, dict[str, str]] = {}
        if celery_workers:
            # A Redis database of its own (1-15), flushed at start, so no other run's messages mix in.
            self.redis_db = secrets.randbelow(15) + 1
            self.env.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{self.redis_db}",
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database.url(),
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.hostnames.worker_name",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                }
            )
            for i in range(1, celery_workers + 1):
                name = f"worker{i}"
                self.components[name] = [
                    str(BIN / "airflow"),
                    "celery",
                    "worker",
                    "--concurrency",
                    "1",
                    "--celery-hostname",
                    f"{name}@%h",
                ]
                self.worker_env[name] = {"TUNEOPS_WORKER_NAME": name}

    def start(self, timeout: float = 180) -> None:
        """Migrate the DB, start the components, log in, and wait until every component reports healthy."""
        for folder in (self.airflow_home, self.tuneops_home, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        # The simple auth manager keeps this file's password for a configured user instead of generating one.
        (self.airflow_home / "passwords.json").write_text(json.dumps({ADMIN: self.admin_password}))
        self.database.create()
        migrate = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert migrate.returncode == 0, (
            f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
        )
        if self.auth_manager == "fab":
            user = [
                str(BIN / "airflow"),
                "users",
                "create",
                "--username",
                ADMIN,
                f"--password={self.admin_password}",  # a token_urlsafe password may start with "-"
                "--role",
                "Admin",
                "--firstname",
                "Test",
                "--lastname",
                "Admin",
                "--email",
                "admin@example.com",
            ]
            created = subprocess.run(user, env=self.env, capture_output=True, text=True, timeout=timeout)
            assert created.returncode == 0, (
                f"airflow users create failed:\n{created.stdout[-3000:]}{created.stderr[-3000:]}"
            )
        pool = [str(BIN / "airflow"), "pools", "set", PROMOTION_POOL, "1", "champion alias moves"]
        subprocess.run(pool, env=self.env, capture_output=True, check=True, timeout=timeout)
        if self.worker_env:
            import redis

            redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db).flushdb()
        for name, command in self.components.items():
            with open(self.logs / f"{name}.log", "wb") as log:
                self._procs[name] = subprocess.Popen(
                    command,
                    env={**self.env, **self.worker_env.get(name, {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
        self.wait_for("the API server to answer", self._api_answers, timeout)
        token = requests.post(
            f"{self.url}/auth/token", json={"username": ADMIN, "password": self.admin_password}, timeout=30
        )
        token.raise_for_status()
        self.api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        self.wait_for("scheduler, DAG processor and triggerer to report healthy", self._all_healthy, timeout)

    def start_with(
        self, parsed: tuple[str, ...], unpause: tuple[str, ...] = (), timeout: float = 180
    ) -> None:
        """``start()``, wait until the DAG processor has parsed ``parsed`` (no import errors), unpause ``unpause``.

        On any failure the stack is stopped and a RuntimeError carries the components' logs.
        """
        try:
            self.start(timeout)
            self.wait_for(
                f"the DAG processor to parse {', '.join(parsed)}", lambda: self._parsed(parsed), timeout
            )
            for dag_id in unpause:
                self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"the Airflow stack did not come up: {exc}\n{self.log_tails()}") from exc

    def _parsed(self, dag_ids: tuple[str, ...]) -> bool:
        errors = self.call("GET", "/importErrors")["import_errors"]
        assert not errors, f"the DAG processor could not import: {errors}"
        return all(self.api.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=30).ok for dag_id in dag_ids)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left after ``grace`` seconds."""
        for proc in self._procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self._procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Also reaps children (task runners, parsers) that outlived their component.
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.api.close()
        self.database.drop()

    def log_tails(self, lines: int = 40) -> str:
        """The last ``lines`` lines of every component's log and of every task attempt's log."""
        logs = [self.logs / f"{name}.log" for name in self.components]
        logs += sorted((self.airflow_home / "logs").glob("dag_id=*/**/*.log"))
        parts = []
        for path in logs:
            text = path.read_text(errors="replace").splitlines() if path.exists() else ["<no log>"]
            parts.append(f"----- {path} (last {lines} lines) -----\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def wait_for(self, what: str, probe: Callable[[], object], timeout: float, interval: float = 2.0):
        """Call ``probe`` until it returns something truthy and return that.

        Raises RuntimeError at once when a component has exited, TimeoutError after ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = {name: p.returncode for name, p in self._procs.items() if p.poll() is not None}
            if exited:
                raise RuntimeError(
                    f"Airflow component(s) exited (name: exit code) {exited} while waiting for {what}"
                )
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def call(self, method: str, path: str, **kwargs) -> dict:
        """An authenticated REST call under /api/v2; returns the JSON body, raises on an error status."""
        response = self.api.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)
        assert response.ok, f"{method} {path} -> {response.status_code}: {response.text[:2000]}"
        return response.json()

    def runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs, newest first."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 100})[
            "dag_runs"
        ]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
        """The task's return value in that run (of one mapped instance with ``map_index``)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.call("GET", path, params={"map_index": map_index})["value"]

    def _api_answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).ok
        except requests.ConnectionError:
            return False

    def _all_healthy(self) -> bool:
        health = self.call("GET", "/monitor/health")
        parts = ("scheduler", "dag_processor", "triggerer")
        return all(health.get(part, {}).get("status") == "healthy" for part in parts)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def running(
    stack: AirflowStack,
    request,
    parsed: tuple[str, ...],
    unpause: tuple[str, ...] = (),
    more_logs: Callable[[], str] | None = None,
) -> Iterator[AirflowStack]:
    """The stack started (``start_with``) for a module fixture's tests, stopped after them; when one
    of those tests failed, the components' logs (and ``more_logs()``) go to the terminal report."""
    failed_before = request.session.testsfailed
    stack.start_with(parsed=parsed, unpause=unpause)
    try:
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed > failed_before:
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            reporter.write_line(f"\nAirflow logs of the failed tests:\n{stack.log_tails()}")
            if more_logs is not None:
                reporter.write_line(more_logs())
