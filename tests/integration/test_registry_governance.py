"""Promotion, rejection and rollback against a real `mlflow server` on PostgreSQL.

Two processes promote at the same time, several rounds: every version survives, and each
promotion demotes exactly the champion before it, so the history is one chain, never two
promotions claiming the same predecessor (the race MLflow's last-writer-wins aliases allow).
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration
ROUNDS = 4

WORKER = """
import json, sys, time
import mlflow
from mlflow import MlflowClient
from tuneops.registry.registry import promote, retry
from tuneops.core.settings import load_settings

name, worker, rounds, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
settings = load_settings()
client = MlflowClient(settings.tracking_uri, settings.registry_uri)
mlflow.set_tracking_uri(settings.tracking_uri)
exp = client.get_experiment_by_name("concurrency").experiment_id
out = []
time.sleep(max(0.0, start_at - time.time()))
for i in range(rounds):
    run = client.create_run(exp)
    client.log_text(run.info.run_id, worker, "model/owner.txt")
    version = retry(lambda: client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id))
    out.append(promote(name, version.version, f"worker-{worker}", settings, reason=f"round {i}"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start(timeout=180)
    yield server
    server.stop()


@pytest.fixture
def env(server, tmp_path):
    """Settings for this test's processes: the server for tracking and registry, a shared artifact store."""
    # MLflow exports MLFLOW_REGISTRY_URI when earlier tests configure it in-process: override both.
    values = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_REGISTRY_URI": server.url,
        "TUNEOPS_HOME": str(tmp_path / "tuneops"),
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield {**os.environ, **values}
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def registry_client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _new_version(client, name: str, exp_id: str) -> str:
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "x", "model/owner.txt")
    return client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version


def test_two_processes_promoting_at_once_keep_one_champion_and_every_version(server, env):
    name = "race-model"
    client = registry_client(server)
    client.create_registered_model(name)
    client.create_experiment("concurrency")
    start_at = time.time() + 8  # both workers import, then start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, w, str(ROUNDS), str(start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results += json.loads(out.strip().splitlines()[-1])

    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == list(range(1, 2 * ROUNDS + 1)), "a version was lost"
    assert all(r["changed"] for r in results)
    previous = [r["previous"] for r in results]
    champion = client.get_model_version_by_alias(name, "champion").version
    # One chain: the first promotion had no predecessor; every other version was demoted exactly once.
    assert sorted(previous, key=lambda p: int(p or 0)) == [None] + sorted(
        (str(v) for v in versions if str(v) != champion), key=int
    ), f"two promotions demoted the same champion: {results}"
    last = next(r for r in results if r["version"] == champion)
    assert client.get_model_version_by_alias(name, "previous_champion").version == last["previous"]
    for r in results:
        tags = client.get_model_version(name, r["version"]).tags
        assert tags["tuneops.promoted_over"] == (r["previous"] or "")
        assert tags["tuneops.approved_by"] in ("worker-a", "worker-b")


def test_reject_then_rollback_records_who_and_why(server, env):
    from tuneops.core.settings import load_settings
    from tuneops.registry.registry import promote, reject, rollback, set_challenger

    settings = load_settings()
    name = "governed-model"
    client = registry_client(server)
    client.create_registered_model(name)
    exp = client.create_experiment("governance")
    v1, v2, v3 = (_new_version(client, name, exp) for _ in range(3))

    promote(name, v1, "alice", settings, reason="first release")
    set_challenger(name, v2, settings)
    reject(name, v2, "bob", "answers in the wrong language", settings)
    tags = client.get_model_version(name, v2).tags
    assert (tags["tuneops.rejected_by"], tags["tuneops.rejection_reason"]) == (
        "bob",
        "answers in the wrong language",
    )
    assert "challenger" not in client.get_registered_model(name).aliases
    assert client.get_model_version_by_alias(name, "champion").version == v1

    promote(name, v3, "carol", settings, reason="fixes billing")
    assert client.get_registered_model(name).aliases == {"champion": v3, "previous_champion": v1}

    back = rollback(name, None, "dave", "v3 misroutes refunds", settings)
    assert back == {"name": name, "version": v1, "previous": v3}
    assert client.get_registered_model(name).aliases == {"champion": v1, "previous_champion": v3}
    demoted, restored = client.get_model_version(name, v3).tags, client.get_model_version(name, v1).tags
    assert (demoted["tuneops.rolled_back_by"], demoted["tuneops.rollback_reason"]) == (
        "dave",
        "v3 misroutes refunds",
    )
    assert demoted["tuneops.rolled_back_to"] == v1 and restored["tuneops.restored_by"] == "dave"

    with pytest.raises(ValueError, match=r"has no version '99'; registered versions: \[1, 2, 3\]"):
        rollback(name, "99", "dave", "typo", settings)
    with pytest.raises(ValueError, match="already the champion"):
        rollback(name, v1, "dave", "again", settings)
    with pytest.raises(ValueError, match="needs a reason"):
        rollback(name, v3, "dave", " ", settings)
    assert client.get_model_version_by_alias(name, "champion").version == v1
