"""A real MLflow tracking server on loopback, for tests: Postgres-backed, serving its own artifacts.

Each server gets a fresh, uniquely named database on the local PostgreSQL (127.0.0.1:5432, user
``postgres``, trust auth), dropped again on ``stop()``, and a private artifact folder or an S3
destination. With ``basic_auth`` it runs MLflow's basic-auth app (users in the same database) with
an admin password generated per server. It runs as its own process group with its own log, so
``stop()`` also ends its uvicorn workers. No pytest here: any test module can wrap it in a fixture.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.integration.airflow_stack import _die_with_parent, _signal_group, free_port
from tests.integration.postgres import FreshDatabase

BIN = Path(sys.executable).parent


class MlflowServer:
    """Start with ``start()``, always ``stop()``; ``url`` is both the tracking and the registry URI."""

    def __init__(
        self,
        root: Path,
        workers: int = 2,
        artifacts_destination: str | None = None,
        env: dict[str, str] | None = None,
        basic_auth: bool = False,
    ):
        """``artifacts_destination``: where the server stores artifacts (an ``s3://`` URI; ``env`` then
        holds the AWS_* variables and MLFLOW_S3_ENDPOINT_URL it needs); a private folder by default.
        ``basic_auth``: require a login; ``admin_password`` is the ``admin`` user's."""
        self.root = Path(root)
        self.artifacts = self.root / "mlflow-artifacts"
        self.artifacts_destination = artifacts_destination or str(self.artifacts)
        self.extra_env = dict(env or {})
        self.basic_auth = basic_auth
        self.admin_password = secrets.token_urlsafe(16) if basic_auth else None
        self.log_path = self.root / "mlflow-server.log"
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = FreshDatabase("tuneops_mlflow")
        self.backend_store_uri = self.database.url()
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        """Create the database, start ``mlflow server`` and wait until ``/health`` answers OK.

        Raises RuntimeError if the server exits, TimeoutError after ``timeout`` s; both carry the
        tail of its log, and the server and its database are cleaned up first.
        """
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.database.create()
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        for inherited in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME"):
            env.pop(inherited, None)
        if self.basic_auth:
            command += ["--app-name", "basic-auth"]
            config = self.root / "basic_auth.ini"
            config.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = {self.backend_store_uri}\nadmin_username = admin\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env.update(
                MLFLOW_AUTH_CONFIG_PATH=str(config),
                MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
            )
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise RuntimeError(
                    f"mlflow server exited with code {code} while starting:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mlflow server at {self.url} not healthy after {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``grace`` s, drop the database."""
        if self._proc is not None:
            _signal_group(self._proc, signal.SIGTERM)
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            # Also reaps uvicorn workers that outlived the parent.
            _signal_group(self._proc, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        self.database.drop()

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server's log."""
        text = (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else ["<no log>"]
        )
        return f"----- {self.log_path} (last {lines} lines) -----\n" + "\n".join(text[-lines:])

    def _healthy(self) -> bool:
        try:
            response = requests.get(f"{self.url}/health", timeout=5)
        # A worker still importing leaves the connection unanswered: a read timeout, not an error.
        except (requests.ConnectionError, requests.Timeout):
            return False
        return response.ok and response.text.strip() == "OK"
