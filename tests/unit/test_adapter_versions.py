"""A registered version is its LoRA adapter plus a reference to its base model, not merged weights.

Built on a tiny random Llama as the base (seconds, no training: a LoRA adapter with random B
weights changes the outputs as a trained one does). The checks a user would make: the version's
files are the adapter (a few percent of the merged size), ``models:/<name>/<v>`` loads with plain
MLflow in a fresh process that has no access to tuneops' artifact store and answers exactly what the
merged model answers, tuneops' own loaders get a merged export made once per fingerprint, and a
replaced base model is refused by name.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_models import PROMPTS, build_lora_adapter, build_tiny_model
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """An adapter version of ``adapter-reference`` on a tiny base folder, registered as llmops_finetune does."""
    import mlflow

    from tuneops.config import Decoding
    from tuneops.core.hashing import hash_dir
    from tuneops.core.tracking import configure_mlflow
    from tuneops.models.base_model import base_reference
    from tuneops.registry.registry import export_fingerprint, log_base_model, register_candidate

    settings = load_settings()
    root = tmp_path_factory.mktemp("adapter-version")
    base = build_tiny_model(root / "base", seed=3, hidden_size=256, layers=4)
    adapter = build_lora_adapter(base, root / "adapter", seed=4)
    reference = log_base_model(
        base_reference(str(base), ArtifactStore.from_settings(settings)), str(base), settings
    )
    fingerprint = export_fingerprint(reference["fingerprint"], hash_dir(adapter))
    run_id = mlflow.MlflowClient().create_run(configure_mlflow(settings)).info.run_id
    out = register_candidate(
        name="adapter-reference",
        base=reference,
        adapter_dir=adapter,
        fingerprint=fingerprint,
        run_id=run_id,
        template=None,
        tags={"tuneops.base_model": str(base)},
        max_new_tokens=8,
        decoding=Decoding(),
        model_card="adapter on a tiny base",
        settings=settings,
    )
    return {"name": out["name"], "version": out["version"], "base": base, "adapter": adapter, "root": root}


def _merged_outputs(base: Path, adapter: Path) -> list[str]:
    from tuneops.models.generation import generate, load_model

    model, tokenizer = load_model(str(base), adapter)
    return generate(model, tokenizer, PROMPTS, max_new_tokens=8)


def test_the_version_holds_the_adapter_and_a_reference_not_merged_weights(registered):
    from tuneops.registry.registry import load_version_files, merge_adapter

    settings = load_settings()
    files = load_version_files(registered["name"], registered["version"], settings, export=False)
    assert sorted(p.name for p in files.adapter_path.glob("*.safetensors")) == ["adapter_model.safetensors"]
    assert files.path is None and files.base["uri"] == str(registered["base"].resolve())
    assert files.base["mlflow_uri"].startswith("runs:/")
    merged = merge_adapter(str(registered["base"]), registered["adapter"], registered["root"] / "merged")
    version_mb = sum(p.stat().st_size for p in files.adapter_path.rglob("*.safetensors")) / 2**20
    merged_mb = sum(p.stat().st_size for p in merged.glob("*.safetensors")) / 2**20
    assert version_mb < 0.05 * merged_mb, (version_mb, merged_mb)


def test_any_mlflow_client_loads_it_in_a_fresh_process_without_the_artifact_store(registered, tmp_path):
    """Only the tracking URI: TUNEOPS_HOME points at an empty folder, so the base must come through MLflow."""
    code = (
        "import json, mlflow\n"
        f"model = mlflow.pyfunc.load_model('models:/{registered['name']}/{registered['version']}')\n"
        f"print(json.dumps(model.predict({PROMPTS!r})))\n"
    )
    env = {**os.environ, "TUNEOPS_HOME": str(tmp_path / "elsewhere")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == _merged_outputs(
        registered["base"], registered["adapter"]
    )


def test_tuneops_loaders_get_a_merged_export_made_once_per_fingerprint(registered):
    from tuneops.registry.registry import EXPORT_FILE, load_version_files

    settings = load_settings()
    files = load_version_files(registered["name"], registered["version"], settings)
    assert (files.path / "model.safetensors").is_file() and (files.path / EXPORT_FILE).is_file()
    made = (files.path / "model.safetensors").stat().st_mtime_ns
    again = load_version_files(registered["name"], registered["version"], settings)
    assert again.path == files.path and (again.path / "model.safetensors").stat().st_mtime_ns == made

    from tuneops.models.generation import generate, load_model

    model, tokenizer = load_model(str(files.path))
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=8) == _merged_outputs(
        registered["base"], registered["adapter"]
    )

    data = bytearray((files.path / "model.safetensors").read_bytes())  # a damaged export is made again
    data[-1] ^= 0xFF
    (files.path / "model.safetensors").write_bytes(bytes(data))
    rebuilt = load_version_files(registered["name"], registered["version"], settings)
    assert (rebuilt.path / "model.safetensors").read_bytes() != bytes(data)


def test_a_replaced_base_model_is_refused_naming_it(registered, tmp_path):
    import shutil

    from tuneops.models.base_model import BaseModelError, fetch_base
    from tuneops.registry.registry import load_version_files

    files = load_version_files(registered["name"], registered["version"], load_settings(), export=False)
    swapped = tmp_path / "base"
    shutil.copytree(registered["base"], swapped)
    build_tiny_model(swapped, seed=99, hidden_size=256, layers=4)  # other weights in the same place
    with pytest.raises(BaseModelError, match=r"hashes to \w+, but the registered adapter was trained on"):
        fetch_base({**files.base, "uri": str(swapped)}, tmp_path / "cache")
    with pytest.raises(BaseModelError, match="is not at .*restore it there"):
        fetch_base({**files.base, "uri": str(tmp_path / "gone")}, tmp_path / "cache")


def test_evaluation_puts_an_adapter_champion_on_the_shared_base_when_it_is_the_same_base(
    registered, tmp_path
):
    from tuneops.evaluation.evaluate import ModelRef
    from tuneops.models.base_model import base_fingerprint
    from tuneops.stages.finetune import champion_ref

    settings = load_settings()
    base = ModelRef("base", f"base:{base_fingerprint(str(registered['base']))}", str(registered["base"]))
    ref = champion_ref(registered["name"], registered["version"], "fp", base, settings)
    assert ref.path == base.path and ref.adapter_dir is not None  # swapped onto the loaded base
    other = build_tiny_model(tmp_path / "other", seed=11, hidden_size=256, layers=4)
    elsewhere = ModelRef("base", f"base:{base_fingerprint(str(other))}", str(other))
    ref = champion_ref(registered["name"], registered["version"], "fp", elsewhere, settings)
    assert ref.adapter_dir is None and (Path(ref.path) / "model.safetensors").is_file()  # its merged export
