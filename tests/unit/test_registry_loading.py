"""tuneops loads a registered version as data: no code from the artifact store runs, and the
weights must be the ones recorded at registration.

Anyone who can write the artifact store can edit a version's ``pyfunc_model.py`` and its bundled
``code/tuneops``. The MLflow flavour executes them (the control below shows it); serving,
evaluation, compression and ``generate_with_champion`` must not, and must refuse weights that
changed after registration.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.support.tiny_models import register_tiny_version
from tuneops.core.settings import load_settings
from tuneops.registry.registry import registry_client

TICKET = {"subject": "Charged twice", "input": "my card was charged twice for order 42, please refund"}
TAMPERED_CODE = ("pyfunc_model.py", "code/tuneops/__init__.py", "code/tuneops/generation.py")


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def _stored(settings, name: str, version: str) -> Path:
    """The version's folder in the (local) artifact store, as MLflow wrote it."""
    uri = registry_client(settings).get_model_version_download_uri(name, version)
    return Path(unquote(urlparse(uri).path))


def _tamper_code(folder: Path, markers: Path) -> None:
    """Make each stored code file write a marker named after itself when executed."""
    for rel in TAMPERED_CODE:
        marker = markers / rel.replace("/", "_")
        with open(folder / rel, "a") as fh:
            fh.write(f"\nimport pathlib as _p\n_p.Path({str(marker)!r}).write_text('executed')\n")


def _flip_a_weight(folder: Path) -> None:
    weights = folder / "artifacts" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_tuneops_loaders_never_execute_code_from_the_artifact_store(settings, tmp_path):
    from tuneops.registry.registry import download_version, load_version_files
    from tuneops.serving.app import load_version
    from tuneops.serving.champion import generate_with_champion

    name = "loading-code-tamper"
    version = register_tiny_version(name, seed=5, settings=settings)
    registry_client(settings).set_registered_model_alias(name, "champion", version)
    markers = tmp_path / "markers"
    markers.mkdir()
    _tamper_code(_stored(settings, name, version), markers)

    files = load_version_files(name, version, settings)
    assert (files.path / "model.safetensors").is_file()
    assert files.template is not None and files.template.id == "triage_v1" and files.max_new_tokens == 12
    assert download_version(name, version, settings) == files.path  # evaluation's and compression's loader
    loaded = load_version(name, version, "merged", settings)
    assert loaded.version == version and loaded.template == files.template
    records = generate_with_champion([TICKET, "ticket 3: my card"], name, settings=settings)
    assert [r["version"] for r in records] == [version, version]
    assert all(isinstance(r["response"], str) for r in records)
    assert records[0]["prompt"].startswith("### System") and records[1]["prompt"] == "ticket 3: my card"
    assert sorted(p.name for p in markers.iterdir()) == [], "a tuneops loader executed stored code"

    # Control: the MLflow flavour in a fresh process does run both, so the tampering above was live.
    probe = f"import mlflow; mlflow.pyfunc.load_model('models:/{name}/{version}')"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=os.environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (markers / "pyfunc_model.py").exists() and (markers / "code_tuneops___init__.py").exists()


def test_weights_changed_in_the_artifact_store_are_refused_naming_the_version(settings):
    from tuneops.registry.registry import ModelIntegrityError, download_version, load_version_files
    from tuneops.serving.app import load_version
    from tuneops.serving.champion import generate_with_champion

    name = "loading-weights-tamper"
    version = register_tiny_version(name, seed=7, settings=settings)
    registry_client(settings).set_registered_model_alias(name, "champion", version)
    _flip_a_weight(_stored(settings, name, version))

    mismatch = (
        rf"{name} v{version}: its weights in the artifact store .* hash to \w+, but tuneops.weights_sha256"
    )
    with pytest.raises(ModelIntegrityError, match=mismatch):
        load_version_files(name, version, settings)
    with pytest.raises(ModelIntegrityError, match=mismatch):
        download_version(name, version, settings)
    with pytest.raises(ModelIntegrityError, match=mismatch):
        load_version(name, version, "merged", settings)
    with pytest.raises(ModelIntegrityError, match=mismatch):
        generate_with_champion([TICKET], name, settings=settings)


def test_a_version_without_a_recorded_weights_hash_is_refused(settings):
    from tuneops.registry.registry import WEIGHTS_TAG, ModelIntegrityError, load_version_files

    name = "loading-no-hash"
    version = register_tiny_version(name, seed=8, settings=settings)
    registry_client(settings).delete_model_version_tag(name, version, WEIGHTS_TAG)
    with pytest.raises(ModelIntegrityError, match=rf"{name} v{version} has no tuneops.weights_sha256 or"):
        load_version_files(name, version, settings)


def test_an_operator_can_vouch_for_a_version_registered_before_hashes_were_recorded(settings):
    from tuneops.cli import main
    from tuneops.registry.registry import CONFIG_TAG, WEIGHTS_TAG, load_version_files

    name = "loading-backfill"
    version = register_tiny_version(name, seed=9, settings=settings)
    recorded = registry_client(settings).get_model_version(name, version).tags
    client = registry_client(settings)
    for tag in (WEIGHTS_TAG, CONFIG_TAG):  # as an older tuneops registered it
        client.delete_model_version_tag(name, version, tag)
    assert main(["record-hashes", "--model", name, "--version", version, "--by", "ops@example.com"]) == 0
    tags = client.get_model_version(name, version).tags
    assert tags[WEIGHTS_TAG] == recorded[WEIGHTS_TAG] and tags[CONFIG_TAG] == recorded[CONFIG_TAG]
    assert tags["tuneops.hashes_recorded_by"] == "ops@example.com"
    assert load_version_files(name, version, settings).weights_sha256 == recorded[WEIGHTS_TAG]
    assert main(["record-hashes", "--model", name, "--version", version, "--by", "someone"]) == 2, (
        "never overwritten"
    )


def test_a_serving_config_changed_in_the_artifact_store_is_refused(settings):
    from tuneops.registry.registry import ModelIntegrityError, load_version_files

    name = "loading-config-tamper"
    version = register_tiny_version(name, seed=10, settings=settings)
    mlmodel = _stored(settings, name, version) / "MLmodel"
    text = mlmodel.read_text()
    assert "max_new_tokens: 12" in text
    mlmodel.write_text(text.replace("max_new_tokens: 12", "max_new_tokens: 4096"))
    with pytest.raises(ModelIntegrityError, match=rf"{name} v{version}: the model_config in its MLmodel"):
        load_version_files(name, version, settings)


def test_a_damaged_cached_copy_is_fetched_again_from_the_store(settings):
    from tuneops.core.hashing import hash_dir
    from tuneops.registry.registry import load_version_files

    name = "loading-cache"
    version = register_tiny_version(name, seed=9, settings=settings)
    files = load_version_files(name, version, settings)
    _flip_a_weight(files.path.parent.parent)  # the cached copy, not the store's
    again = load_version_files(name, version, settings)
    assert again.path == files.path and hash_dir(again.path) == files.weights_sha256
