"""Registration against a real `mlflow server` on PostgreSQL that dies, repeats itself, or is raced.

However a registration is interrupted or doubled, the model ends with exactly one complete
version per candidate fingerprint (description, lineage, fingerprint, weights hash) and no
half-made version beside it:

- the server is SIGKILLed right after it created the version, before it could answer; it is
  restarted on the same database and artifact root and the registration retried;
- an earlier attempt of the same run left a bare version (no tags) behind;
- the HTTP client sends the create twice (MLflow retries POSTs whose answer was lost);
- two processes register the same candidate at the same moment, several trials.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.mlflow_server import MlflowServer
from tests.support.tiny_models import build_tiny_model

pytestmark = pytest.mark.integration
TRIALS = 3
CARD = "# tiny candidate\n\nA LoRA adapter on a random 2-layer Llama, for registry fault tests."
LINEAGE = {
    "tuneops.dataset_version": "v-test",
    "tuneops.git_commit": "abc123",
    "tuneops.gate.test.rougeL": 0.5,
}

WORKER = """
import json, sys, time
from pathlib import Path

import mlflow, peft, torch, transformers  # imported before the barrier, so both start on time

from tuneops.config import Decoding, load_template
from tuneops.registry.registry import register_candidate
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.models.base_model import base_reference

args = json.loads(sys.argv[1])
settings = load_settings()
base = base_reference(args["base"], ArtifactStore.from_settings(settings))
barrier = Path(args["barrier"])
out = []
for trial in args["trials"]:
    (barrier / f"{trial['name']}.{args['worker']}").touch()
    while len(list(barrier.glob(f"{trial['name']}.*"))) < 2:
        time.sleep(0.005)
    out.append(register_candidate(
        name=trial["name"], base=base, adapter_dir=Path(args["adapter"]),
        fingerprint=trial["fingerprint"], run_id=trial["runs"][args["worker"]],
        template=load_template("triage_v1"), tags=args["tags"], max_new_tokens=12,
        decoding=Decoding(), model_card=args["card"], settings=settings,
    ))
print(json.dumps(out))
"""


class _SurvivingDatabase:
    """The server's database across a crash: already there when the server starts again."""

    def __init__(self, database):
        self.database = database

    def create(self) -> None:
        pass

    def drop(self) -> None:
        self.database.drop()


class CrashableServer(MlflowServer):
    """An MlflowServer that can die like a crashed host and come back on the same database, port and artifacts."""

    def kill(self) -> None:
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def restart(self, timeout: float = 180) -> None:
        self.database = _SurvivingDatabase(self.database)
        self.start(timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = CrashableServer(tmp_path_factory.mktemp("mlflow"))
    server.start(timeout=180)
    yield server
    server.stop()


@pytest.fixture
def env(server, tmp_path):
    """Settings for this test's processes: the server, a shared artifact store (and so shared locks),
    and no HTTP retries in MLflow's client, so a dead server fails the call at once."""
    values = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_REGISTRY_URI": server.url,
        "TUNEOPS_HOME": str(tmp_path / "tuneops"),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield {**os.environ, **values}
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def candidate(tmp_path_factory) -> dict:
    """A tiny base model and an untrained (but non-zero) LoRA adapter with its tokenizer, as training leaves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("candidate")
    base = build_tiny_model(root / "base", seed=11)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(root / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "adapter")
    return {"base": str(base), "adapter": str(root / "adapter")}


def registry_client():
    from mlflow import MlflowClient

    return MlflowClient(
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"], registry_uri=os.environ["MLFLOW_REGISTRY_URI"]
    )


def _new_run() -> str:
    from tuneops.core.settings import load_settings
    from tuneops.core.tracking import configure_mlflow

    return registry_client().create_run(configure_mlflow(load_settings())).info.run_id


def _register(candidate: dict, name: str, fingerprint: str, run_id: str) -> dict:
    from tuneops.config import Decoding, load_template
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.models.base_model import base_reference
    from tuneops.registry.registry import register_candidate

    settings = load_settings()
    return register_candidate(
        name=name,
        base=base_reference(candidate["base"], ArtifactStore.from_settings(settings)),
        adapter_dir=Path(candidate["adapter"]),
        fingerprint=fingerprint,
        run_id=run_id,
        template=load_template("triage_v1"),
        tags=LINEAGE,
        max_new_tokens=12,
        decoding=Decoding(),
        model_card=CARD,
        settings=settings,
    )


def _the_complete_version(name: str, fingerprint: str) -> str:
    """The one version of ``name`` with ``fingerprint``, checked to be complete; fails on a second one."""
    from tuneops.registry.registry import FINGERPRINT_TAG, WEIGHTS_TAG

    client = registry_client()
    found = client.search_model_versions(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
    assert len(found) == 1, (
        f"{len(found)} versions of {name} with one fingerprint: {[v.version for v in found]}"
    )
    mv = client.get_model_version(name, found[0].version)
    assert mv.description == CARD
    assert {k: mv.tags.get(k) for k in LINEAGE} == {k: str(v) for k, v in LINEAGE.items()}
    assert len(mv.tags[WEIGHTS_TAG]) == 64
    return str(mv.version)


def test_a_server_killed_right_after_creating_the_version_leaves_one_complete_version(
    server, env, candidate, monkeypatch
):
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.rest_store import RestStore

    name, fingerprint = "killed-model", "a" * 64
    run_id = _new_run()
    create = RestStore.create_model_version

    def create_then_die(self, *args, **kwargs):
        created = create(self, *args, **kwargs)
        server.kill()
        raise requests.ConnectionError(
            f"the registry died before answering (it had created v{created.version})"
        )

    monkeypatch.setattr(RestStore, "create_model_version", create_then_die)
    with pytest.raises((requests.ConnectionError, MlflowException)):
        _register(candidate, name, fingerprint, run_id)
    monkeypatch.setattr(RestStore, "create_model_version", create)
    server.restart()

    result = _register(candidate, name, fingerprint, run_id)
    version = _the_complete_version(name, fingerprint)
    assert [v.version for v in registry_client().search_model_versions(f"name = '{name}'")] == [version]
    assert result == {"name": name, "version": version, "reused": True}


def test_a_bare_version_left_by_an_earlier_attempt_is_replaced_not_kept_beside_the_new_one(
    server, env, candidate
):
    name, fingerprint = "half-made-model", "b" * 64
    client = registry_client()
    client.create_registered_model(name)
    run_id, other_run = _new_run(), _new_run()
    for run in (run_id, other_run):
        client.log_text(run, "partial upload", "model/partial.txt")
    bare = client.create_model_version(name, f"runs:/{run_id}/model", run_id).version
    someone_elses = client.create_model_version(name, f"runs:/{other_run}/model", other_run).version

    result = _register(candidate, name, fingerprint, run_id)
    version = _the_complete_version(name, fingerprint)
    remaining = sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert str(bare) not in remaining, "the incomplete version from this run was left beside the new one"
    assert remaining == sorted([str(someone_elses), version]), "another run's version must survive"
    assert result == {"name": name, "version": version, "reused": False}


def test_a_create_sent_twice_by_the_http_client_leaves_one_version(server, env, candidate, monkeypatch):
    from mlflow.store.model_registry.rest_store import RestStore

    name, fingerprint = "sent-twice-model", "c" * 64
    create = RestStore.create_model_version

    def sent_twice(self, *args, **kwargs):
        create(self, *args, **kwargs)  # its answer was lost, so the request goes out again
        return create(self, *args, **kwargs)

    monkeypatch.setattr(RestStore, "create_model_version", sent_twice)
    result = _register(candidate, name, fingerprint, _new_run())
    version = _the_complete_version(name, fingerprint)
    assert [v.version for v in registry_client().search_model_versions(f"name = '{name}'")] == [version]
    assert result == {"name": name, "version": version, "reused": False}


def test_two_processes_registering_the_same_candidate_at_once_make_one_version(
    server, env, candidate, tmp_path
):
    trials = []
    for trial in range(TRIALS):
        run_a = _new_run()
        # Trial 0: a retried task racing its stale self (one run); the others: two DAG runs.
        run_b = run_a if trial == 0 else _new_run()
        trials.append(
            {"name": f"race-{trial}", "fingerprint": f"{trial}" * 64, "runs": {"a": run_a, "b": run_b}}
        )
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = {**candidate, "trials": trials, "barrier": str(barrier), "tags": LINEAGE, "card": CARD}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps({**args, "worker": worker})],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in ("a", "b")
    ]
    results = []
    started = time.monotonic()
    for proc in procs:
        out, err = proc.communicate(timeout=max(1, 900 - (time.monotonic() - started)))
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    for trial, by_a, by_b in zip(trials, *results, strict=True):
        version = _the_complete_version(trial["name"], trial["fingerprint"])
        assert [v.version for v in registry_client().search_model_versions(f"name = '{trial['name']}'")] == [
            version
        ]
        assert by_a["version"] == by_b["version"] == version
        assert sorted([by_a["reused"], by_b["reused"]]) == [False, True]
