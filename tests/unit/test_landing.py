"""Validation reads only from landing roots and never loses or touches a file it does not own.

Each case here was a way to make ``llmops_validate_data`` (or ``tuneops validate``) read or delete
files outside the landing area, or to lose a rejected batch to a crash mid-quarantine.
"""

import json
import os
from pathlib import Path

import pytest

from tuneops.config import (
    ConfigError,
    load_dataset_config,
    load_monitor_config,
    load_recipe,
    load_safety_suite,
)
from tuneops.core.hashing import hash_file
from tuneops.core.landing import LANDING_ROOTS_ENV, OutsideLandingRoots, confine
from tuneops.core.sample_data import generate_tickets
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.data.validation import BatchRejected, validate_batch


@pytest.fixture(scope="module")
def config():
    return load_dataset_config("support_tickets").model_copy(update={"tokenizer": None})


@pytest.fixture
def layout(tmp_path):
    """A landing root, a store, and a folder of the user's outside every root."""
    landing = tmp_path / "landing"
    landing.mkdir()
    outside = tmp_path / "users-own-files"
    outside.mkdir()
    (outside / "notes.jsonl").write_text("not json at all\n")
    (outside / "keep.csv").write_bytes(b"\xff\xfe not utf-8")
    return landing, outside, ArtifactStore(str(tmp_path / "artifacts")), [str(landing)]


def _snapshot(folder: Path) -> dict:
    return {p.name: hash_file(p) for p in sorted(folder.iterdir())}


def _good(path: Path, n: int = 40, seed: int = 3) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in generate_tickets(n, seed=seed)))
    return path


def test_the_cli_refuses_a_folder_outside_every_landing_root_and_touches_nothing(layout, monkeypatch, capsys):
    from tuneops.cli import main

    _, outside, _, _ = layout
    before = _snapshot(outside)
    assert main(["validate", "--batch", str(outside), "--project", "support_tickets"]) == 2
    error = capsys.readouterr().err
    assert "outside every landing root" in error and LANDING_ROOTS_ENV in error
    assert str(load_settings().home / "landing") in error, "the error names the roots"
    assert _snapshot(outside) == before, "nothing outside a landing root is modified or deleted"


def test_landing_roots_extend_through_the_setting(layout, monkeypatch, config):
    landing, outside, store, _ = layout
    monkeypatch.setenv(LANDING_ROOTS_ENV, f"{outside}, s3://their-bucket/incoming/")
    roots = load_settings().landing_roots
    assert str(outside) in roots and "s3://their-bucket/incoming" in roots
    assert str(load_settings().home / "landing") in roots, "the embedded landing folder stays a root"
    batch = _good(outside / "batch.jsonl")
    assert validate_batch(str(batch), config, store, landing / ".cache", roots)["rows"] == 40


@pytest.mark.parametrize(
    "uri, message",
    [
        ("file://{landing}/batch.jsonl", "file: URI"),
        ("{landing}/../users-own-files", "'..' segment"),
        ("{landing}/sub/../../users-own-files/notes.jsonl", "'..' segment"),
        ("http://example.invalid/batch.jsonl", "scheme 'http'"),
        ("s3://other-bucket/landing/batch.jsonl", "outside every landing root"),
        ("s3://landing-bucket/landing/../secrets", "'..' segment"),
        ("{outside}", "outside every landing root"),
    ],
)
def test_uris_that_could_lead_out_of_a_root_are_refused_before_any_read(layout, config, uri, message):
    landing, outside, store, roots = layout
    before = _snapshot(outside)
    with pytest.raises(OutsideLandingRoots, match=message):
        validate_batch(
            uri.format(landing=landing, outside=outside),
            config,
            store,
            landing / ".cache",
            [*roots, "s3://landing-bucket/landing"],
        )
    assert _snapshot(outside) == before and store.list_keys("quarantine/support_tickets") == []


def test_a_symlink_out_of_the_batch_folder_is_refused_naming_it_and_its_target_survives(layout, config):
    landing, outside, store, roots = layout
    batch = landing / "batch-1"
    batch.mkdir()
    _good(batch / "part-0.jsonl")
    (batch / "part-1.jsonl").symlink_to(
        outside / "notes.jsonl"
    )  # unreadable as a batch: would be quarantined
    before = _snapshot(outside)
    with pytest.raises(OutsideLandingRoots, match=r"part-1\.jsonl is a symlink to .*notes\.jsonl"):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert _snapshot(outside) == before
    assert (batch / "part-1.jsonl").is_symlink() and (batch / "part-0.jsonl").is_file()
    # A link to the outside as the batch itself, and a linked folder, are refused the same way.
    (landing / "linked.jsonl").symlink_to(outside / "notes.jsonl")
    (landing / "linked-folder").symlink_to(outside)
    for link in ("linked.jsonl", "linked-folder"):
        with pytest.raises(OutsideLandingRoots, match="symlink"):
            validate_batch(str(landing / link), config, store, landing / ".cache", roots)
    assert _snapshot(outside) == before


def test_a_link_inside_the_folder_is_read_and_only_the_link_is_removed(layout, config):
    landing, _, store, roots = layout
    batch = landing / "batch-2"
    batch.mkdir()
    (batch / "_originals").mkdir()
    (batch / "_originals" / "bad.jsonl").write_text('{"ticket_id": "x"}\nnot json\n')
    (batch / "part-0.jsonl").symlink_to(batch / "_originals" / "bad.jsonl")
    with pytest.raises(BatchRejected, match="invalid JSON"):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert not (batch / "part-0.jsonl").exists() and (batch / "_originals" / "bad.jsonl").is_file()


def _bad_batch(landing: Path) -> Path:
    batch = landing / "rejected"
    batch.mkdir()
    rows = [{**r, "triage": ""} for r in generate_tickets(30, seed=5)]  # every response empty: critical
    (batch / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return batch


def _quarantined(store: ArtifactStore) -> list[str]:
    return store.list_keys("quarantine/support_tickets")


def test_a_crash_before_the_quarantine_copy_is_complete_leaves_the_source(layout, config, monkeypatch):
    landing, _, store, roots = layout
    batch = _bad_batch(landing)
    before = _snapshot(batch)

    def dies_mid_copy(self, local_dir, key):
        staged = self.local_root / ".staging" / "crashed"
        staged.mkdir(parents=True)
        (staged / "summary.md").write_text("half")
        raise KeyboardInterrupt("worker killed mid-publish")

    monkeypatch.setattr(ArtifactStore, "publish_dir", dies_mid_copy)
    with pytest.raises(KeyboardInterrupt):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert _snapshot(batch) == before and _quarantined(store) == []


def test_a_crash_after_the_copy_loses_nothing_and_the_rerun_finishes_the_move(layout, config, monkeypatch):
    landing, _, store, roots = layout
    batch = _bad_batch(landing)
    before = _snapshot(batch)
    monkeypatch.setattr(
        "tuneops.data.validation.remove_file", lambda uri: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert _snapshot(batch) == before, "the source is still there"
    (key,) = _quarantined(store)
    monkeypatch.undo()
    with pytest.raises(BatchRejected, match="batch moved to"):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert list(batch.iterdir()) == [] and _quarantined(store) == [key]
    listing = json.loads((store.fetch_dir(key) / "files.json").read_text())
    assert [(e["source"], e["sha256"]) for e in listing] == [
        (str(batch / "part-0.jsonl"), before["part-0.jsonl"])
    ]
    assert hash_file(store.fetch_dir(key) / listing[0]["file"]) == before["part-0.jsonl"]


def _after_publish(monkeypatch, action) -> None:
    """Run ``action(store, key)`` right after each publish: what happens between copy and removal."""
    publish = ArtifactStore.publish_dir

    def publish_then_act(self, local_dir, key):
        uri = publish(self, local_dir, key)
        action(self, key)
        return uri

    monkeypatch.setattr(ArtifactStore, "publish_dir", publish_then_act)


def test_a_source_rewritten_while_it_was_validated_is_new_data_and_stays(layout, config, monkeypatch):
    landing, _, store, roots = layout
    batch = _bad_batch(landing)
    _after_publish(monkeypatch, lambda store, key: _good(batch / "part-0.jsonl", seed=9))  # the producer
    with pytest.raises(BatchRejected, match="changed while being validated and were left in place"):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert hash_file(batch / "part-0.jsonl") == hash_file(_good(landing / "expected.jsonl", seed=9))


def test_a_tampered_quarantine_copy_keeps_the_source(layout, config, monkeypatch):
    landing, _, store, roots = layout
    batch = _bad_batch(landing)
    _after_publish(
        monkeypatch,
        lambda store, key: (store.local_root / key / "files" / "000-part-0.jsonl").write_text("truncated"),
    )
    with pytest.raises(RuntimeError, match="does not match"):
        validate_batch(str(batch), config, store, landing / ".cache", roots)
    assert (batch / "part-0.jsonl").is_file()


@pytest.mark.parametrize("key", ["../outside", "datasets/../../etc", "a/./b", "a//b", "..", "a\\..\\b"])
def test_artifact_keys_that_could_leave_the_store_are_refused(tmp_path, key):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    for call in (store.uri, store.exists, store.fetch_dir, store.remove_dir, store.list_keys):
        with pytest.raises(ValueError, match="segment or a backslash"):
            call(key)
    with pytest.raises(ValueError):
        store.key_of(f"{tmp_path}/artifacts/{key}")


def test_dataset_and_validated_uri_params_that_escape_the_store_are_refused(tmp_path, restored_environ):
    from tuneops.stages.build_prompt_dataset import build_prompts
    from tuneops.stages.finetune import plan_training

    settings = load_settings()
    escaping = f"{settings.artifact_root}/datasets/../../../etc"
    with pytest.raises(ValueError, match="'..'"):
        plan_training(escaping, "tiny-local", settings=settings)
    with pytest.raises(ValueError, match="'..'"):
        build_prompts([f"{settings.artifact_root}/validated/../../x"], "support_tickets", settings)
    with pytest.raises(ValueError, match="not inside the artifact store"):
        build_prompts(["/etc/passwd"], "support_tickets", settings)


SECRET = "hunter2-do-not-echo"


@pytest.mark.parametrize(
    "loader",
    [load_recipe, load_dataset_config, load_monitor_config, load_safety_suite],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize(
    "content",
    [
        f"password={SECRET}\n",  # a plain string, e.g. an env file
        f"- {SECRET}\n- two\n",  # a list
        f"key: [unclosed {SECRET}\n",  # not YAML at all
        f"a: 1\n\tb: {SECRET}\n",  # a tab where YAML wants spaces
    ],
)
def test_a_config_file_that_is_not_a_mapping_is_named_without_echoing_it(tmp_path, loader, content):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        loader(str(path))
    assert str(path) in str(err.value) and "mapping" in str(err.value)
    assert SECRET not in str(err.value)


def test_binary_files_and_huge_names_get_a_short_error(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(os.urandom(256) + b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        load_recipe(str(path))
    assert len(str(err.value)) < 300
    with pytest.raises(ConfigError) as err:
        load_recipe("x" * 100_000)
    assert len(str(err.value)) < 500


def test_confine_normalises_what_it_accepts(tmp_path):
    roots = [str(tmp_path), "s3://bucket/landing"]
    assert confine(f"{tmp_path}/a/b.jsonl", roots) == f"{tmp_path}/a/b.jsonl"
    assert confine("s3://bucket/landing/day=1/", roots) == "s3://bucket/landing/day=1"
    with pytest.raises(OutsideLandingRoots):
        confine("s3://bucket/landing-other/x", roots)  # a sibling prefix is not inside
    with pytest.raises(OutsideLandingRoots):
        confine(f"{tmp_path}-sibling/x", roots)
