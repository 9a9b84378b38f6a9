import pytest

from tuneops.core.store import MARKER, ArtifactNotFound, ArtifactStore


def _publishable(tmp_path, text="hello"):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(text)
    (src / "sub" / "b.txt").write_text("b")
    return src


def test_local_publish_is_complete_and_idempotent(tmp_path):
    store = ArtifactStore(str(tmp_path / "root"))
    uri = store.publish_dir(_publishable(tmp_path), "things/v1")
    assert store.exists("things/v1")
    assert (store.fetch_dir("things/v1") / "sub" / "b.txt").read_text() == "b"
    # Publishing again under the same key keeps the first content (content-addressed keys).
    assert store.publish_dir(_publishable(tmp_path / "other", "changed"), "things/v1") == uri
    assert (store.fetch_dir("things/v1") / "a.txt").read_text() == "hello"
    assert store.list_keys("things") == ["things/v1"]


def test_a_folder_without_marker_is_invisible_and_replaced(tmp_path):
    store = ArtifactStore(str(tmp_path / "root"))
    partial = tmp_path / "root" / "things" / "v1"
    partial.mkdir(parents=True)
    (partial / "a.txt").write_text("half written")
    assert not store.exists("things/v1")
    assert store.list_keys("things") == []
    with pytest.raises(ArtifactNotFound):
        store.fetch_dir("things/v1")
    store.publish_dir(_publishable(tmp_path), "things/v1")
    assert (store.fetch_dir("things/v1") / "a.txt").read_text() == "hello"
    assert (partial / MARKER).is_file()


def test_json_roundtrip_and_objects(tmp_path):
    store = ArtifactStore(str(tmp_path / "root"))
    store.write_json("gates/x", {"passed": True})
    assert store.read_json("gates/x") == {"passed": True}
    store.write_bytes("log/dt=1/a.jsonl", b"{}\n")
    assert store.list_objects("log") == ["log/dt=1/a.jsonl"]
    assert store.read_bytes("log/dt=1/a.jsonl") == b"{}\n"


@pytest.fixture(scope="module")
def s3_endpoint(moto_s3):
    import boto3

    boto3.client("s3").create_bucket(Bucket="tuneops-test")
    return moto_s3


def test_s3_publish_fetch_and_partial_invisibility(tmp_path, s3_endpoint):
    import boto3

    store = ArtifactStore("s3://tuneops-test/artifacts", cache_dir=tmp_path / "cache")
    assert store.uri("things/v1") == "s3://tuneops-test/artifacts/things/v1"
    # An upload that crashed before its marker is not a published artifact.
    boto3.client("s3").put_object(Bucket="tuneops-test", Key="artifacts/things/v0/a.txt", Body=b"half")
    assert not store.exists("things/v0")
    store.publish_dir(_publishable(tmp_path), "things/v1")
    assert store.list_keys("things") == ["things/v1"]
    local = store.fetch_dir("things/v1")
    assert (local / "sub" / "b.txt").read_text() == "b"
    store.write_json("gates/x", {"ok": 1})
    assert store.read_json("gates/x") == {"ok": 1}
    store.write_bytes("log/h=1/a.jsonl", b"x")
    assert store.list_objects("log") == ["log/h=1/a.jsonl"]


def test_republishing_a_fetched_artifact_to_s3_is_invisible_until_complete(
    tmp_path, s3_endpoint, monkeypatch
):
    """A folder fetched from a store carries its own marker; copied to S3 it must not mark the
    copy complete before the last file is up (``_SUCCESS`` sorts before lowercase names)."""
    import tuneops.core.store as store_module

    local = ArtifactStore(str(tmp_path / "root"))
    source = local.fetch_dir(local.key_of(local.publish_dir(_publishable(tmp_path), "models/m1")))
    assert (source / MARKER).is_file()
    real_client = store_module.s3_client

    class DiesOnTheLastFile:
        def __init__(self, credentials=None):
            self.client = real_client(credentials)

        def __getattr__(self, name):
            return getattr(self.client, name)

        def upload_file(self, filename, bucket, key):
            if key.endswith("sub/b.txt"):
                raise ConnectionError("network gone")
            return self.client.upload_file(filename, bucket, key)

    monkeypatch.setattr(store_module, "s3_client", DiesOnTheLastFile)
    store = ArtifactStore("s3://tuneops-test/republished", cache_dir=tmp_path / "cache")
    with pytest.raises(ConnectionError):
        store.publish_dir(source, "models/m1")
    assert not store.exists("models/m1")

    monkeypatch.setattr(store_module, "s3_client", real_client)
    store.publish_dir(source, "models/m1")
    assert store.exists("models/m1") and (store.fetch_dir("models/m1") / "sub" / "b.txt").read_text() == "b"


def test_bad_s3_uri_is_explained():
    with pytest.raises(ValueError, match="no valid bucket name"):
        ArtifactStore("s3://a/prefix")


def test_a_batch_landed_on_s3_validates_and_a_bad_one_moves_to_s3_quarantine(tmp_path, s3_endpoint):
    """The same validation code path on s3:// URIs: only the URI changes."""
    import json

    import boto3

    from tuneops.config import load_dataset_config
    from tuneops.core.sample_data import generate_tickets
    from tuneops.data.validation import BatchRejected, validate_batch

    s3 = boto3.client("s3")
    config = load_dataset_config("support_tickets").model_copy(update={"tokenizer": None})
    store = ArtifactStore("s3://tuneops-test/artifacts-validation", cache_dir=tmp_path / "cache")
    good = "".join(json.dumps(r) + "\n" for r in generate_tickets(40, seed=8))
    s3.put_object(Bucket="tuneops-test", Key="landing/good/part-0.jsonl", Body=good.encode())
    roots = ["s3://tuneops-test/landing"]
    result = validate_batch("s3://tuneops-test/landing/good", config, store, tmp_path / "cache", roots)
    assert result["rows"] == 40 and result["uri"].startswith(
        "s3://tuneops-test/artifacts-validation/validated/"
    )
    assert store.exists(result["key"])

    s3.put_object(
        Bucket="tuneops-test", Key="landing/bad/part-0.jsonl", Body=b'{"ticket_id": "x"}\nnot json\n'
    )
    with pytest.raises(BatchRejected, match="line 2: invalid JSON") as err:
        validate_batch("s3://tuneops-test/landing/bad", config, store, tmp_path / "cache", roots)
    assert store.exists(err.value.report_key)
    quarantined = store.list_objects(err.value.report_key)
    assert sorted(k.rsplit("/", 1)[-1] for k in quarantined) == [
        "000-part-0.jsonl",
        "_SUCCESS",
        "files.json",
        "summary.md",
    ]
    assert "Contents" not in s3.list_objects_v2(Bucket="tuneops-test", Prefix="landing/bad/")
