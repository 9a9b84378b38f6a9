"""The artifact store on S3: ours (boto3) against the same protocol on fsspec/s3fs, and which guarantees s3fs keeps.

One moto S3 server on loopback serves both sides; credentials and ``AWS_ENDPOINT_URL`` reach both through
the environment. Each side runs in a child process per repeat (ours with the venv's botocore; fsspec with
``--fsspec-path`` first on ``PYTHONPATH``, because aiobotocore pins an older botocore), alternating which goes
first, and times, after its imports:
  (a) publishing a folder shaped like a prompt dataset plus an adapter (20 files of mixed sizes, about 4 MiB,
      and one ``--big-mib`` file): ``ArtifactStore.publish_dir`` against ``fs.put`` of the files then
      ``fs.pipe_file`` of the ``_SUCCESS`` marker;
  (b) fetching it back into an empty cache: ``fetch_dir`` against ``fs.find`` + ``fs.get`` into a staging
      folder renamed into place;
  (c) ``exists`` of a published and of a missing key, and listing the complete artifacts among 50 marked
      and 10 unmarked folders (``list_keys`` against ``fs.find``).
Every fetched folder is checked byte for byte against the source. Then a fsspec child checks, against the
same server and on the local filesystem, which of the store's and the lock's guarantees fsspec/s3fs can
express (conditional create, compare-and-swap, compare-and-delete, marker after files, atomic rename).
Prints one JSON document: per-side medians, ratios fsspec / ours, the guarantee findings.

    .venv/bin/python -m pip install --target /tmp/fsspec-pkgs s3fs==2026.9.0
    .venv/bin/python bench/store_backends.py [--repeats 4] [--fsspec-path /tmp/fsspec-pkgs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "_SUCCESS"
BUCKET = "store-bench"
#: Probed by every worker: 50 complete folders and 10 uploads cut short before their marker.
CATALOG_COMPLETE, CATALOG_UNMARKED = 50, 10
HIT, MISS = "catalog/v025", "catalog/v999"
#: (relative path, bytes): a prompt dataset's splits and stats, an adapter's config and tokenizer files.
SMALL_FILES = [
    ("data/train.jsonl", 1_600_000),
    ("data/validation.jsonl", 200_000),
    ("data/test.jsonl", 200_000),
    ("data/golden.jsonl", 60_000),
    ("data/safety.jsonl", 30_000),
    ("stats/token_lengths.json", 90_000),
    ("stats/eda.md", 12_000),
    ("stats/minhash.bin", 400_000),
    ("stats/contamination.json", 4_000),
    ("manifest.json", 2_500),
    ("recipe.yaml", 1_800),
    ("adapter/adapter_config.json", 900),
    ("adapter/tokenizer.json", 1_100_000),
    ("adapter/tokenizer_config.json", 3_000),
    ("adapter/special_tokens_map.json", 600),
    ("adapter/generation_config.json", 300),
    ("adapter/training_args.json", 5_000),
    ("adapter/trainer_state.json", 48_000),
    ("adapter/README.md", 5_500),
    ("summary.json", 700),
]
BIG_FILE = "adapter/adapter_model.safetensors"


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def per_call_ms(call, n: int) -> float:
    """Mean milliseconds of ``n`` calls of ``call``."""
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1000


def make_artifact(folder: Path, big_mib: int) -> dict[str, str]:
    """Write the folder to publish; returns ``{relative path: sha256}``."""
    rng = random.Random(16)
    files = [*SMALL_FILES, (BIG_FILE, big_mib * 2**20)]
    for rel, size in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return digest(folder)


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def seed_catalog(client) -> None:
    for i in range(CATALOG_COMPLETE + CATALOG_UNMARKED):
        name = f"catalog/v{i:03d}" if i < CATALOG_COMPLETE else f"catalog/u{i:03d}"
        for part in ("data.json", "stats/a.json", "stats/b.json"):
            client.put_object(Bucket=BUCKET, Key=f"{name}/{part}", Body=b"{}")
        if i < CATALOG_COMPLETE:
            client.put_object(Bucket=BUCKET, Key=f"{name}/{MARKER}", Body=b"")


# --- the workers: one process each -------------------------------------------------------------


def work_ours(key: str, src: Path, cache: Path, lookups: int) -> dict:
    import boto3  # noqa: F401  (imported lazily by the store: not part of the first timed call)

    from tuneops.core.store import ArtifactStore

    store = ArtifactStore(f"s3://{BUCKET}", cache_dir=cache, credentials={})
    publish_s, _ = timed(lambda: store.publish_dir(src, key))
    fetch_s, fetched = timed(lambda: store.fetch_dir(key))
    client = store.client()
    marker = f"{HIT}/{MARKER}"
    listed = store.list_keys("catalog")
    return {
        "client_ms": per_call_ms(store.client, lookups),
        "publish_s": publish_s,
        "fetch_s": fetch_s,
        "exists_hit_ms": per_call_ms(lambda: store.exists(HIT), lookups),
        "exists_miss_ms": per_call_ms(lambda: store.exists(MISS), lookups),
        # exists() builds a boto3 client per call (client_ms); this is the same HEAD on one reused client.
        "head_reused_client_ms": per_call_ms(lambda: client.head_object(Bucket=BUCKET, Key=marker), lookups),
        "list_keys_ms": per_call_ms(lambda: store.list_keys("catalog"), lookups),
        "listed": len(listed),
        "fetched": str(fetched),
    }


class FsspecStore:
    """The store's publish / fetch / exists / list protocol written on one fsspec filesystem.

    What a rebuild on fsspec would do on S3: files first, then the ``_SUCCESS`` marker; readers trust
    only marked folders; a fetch lands in a staging folder renamed into place once its marker is there.
    """

    def __init__(self, fs, root: str):
        self.fs, self.root = fs, root.rstrip("/")

    def exists(self, key: str) -> bool:
        return self.fs.exists(f"{self.root}/{key}/{MARKER}")

    def publish_dir(self, local_dir: Path, key: str) -> None:
        if self.exists(key):
            return
        base = f"{self.root}/{key}"
        files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p != local_dir / MARKER)
        self.fs.put([str(p) for p in files], [f"{base}/{p.relative_to(local_dir).as_posix()}" for p in files])
        self.fs.pipe_file(f"{base}/{MARKER}", b"")

    def fetch_dir(self, key: str, cache_dir: Path) -> Path:
        if not self.exists(key):
            raise FileNotFoundError(f"no complete artifact at {self.root}/{key}")
        local = cache_dir / "s3" / self.root / key
        if (local / MARKER).is_file():
            return local
        base = f"{self.root}/{key}"
        remote = self.fs.find(base)
        staging = local.parent / f".{local.name}.{uuid.uuid4().hex}"
        self.fs.get(remote, [str(staging / r[len(base) + 1 :]) for r in remote])
        if not (staging / MARKER).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise FileNotFoundError(f"no complete artifact at {base}")
        if local.exists():
            shutil.rmtree(local)
        os.replace(staging, local)
        return local

    def list_keys(self, prefix: str) -> list[str]:
        base = f"{self.root}/{prefix}/"
        found = set()
        for path in self.fs.find(base):
            name, _, tail = path[len(base) :].partition("/")
            if tail == MARKER:
                found.add(f"{prefix}/{name}")
        return sorted(found)


def s3fs_filesystem(**options):
    import s3fs

    # No listings cache: a store must see other processes' markers (see the guarantee check).
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)


def work_fsspec(key: str, src: Path, cache: Path, lookups: int) -> dict:
    import s3fs  # noqa: F401  (not part of the timed setup)

    setup_s, fs = timed(s3fs_filesystem)
    store = FsspecStore(fs, BUCKET)
    publish_s, _ = timed(lambda: store.publish_dir(src, key))
    fetch_s, fetched = timed(lambda: store.fetch_dir(key, cache))
    listed = store.list_keys("catalog")
    return {
        "setup_s": setup_s,
        "publish_s": publish_s,
        "fetch_s": fetch_s,
        "exists_hit_ms": per_call_ms(lambda: store.exists(HIT), lookups),
        "exists_miss_ms": per_call_ms(lambda: store.exists(MISS), lookups),
        "list_keys_ms": per_call_ms(lambda: store.list_keys("catalog"), lookups),
        "listed": len(listed),
        "fetched": str(fetched),
    }


def _outcome(call) -> str:
    """``ok`` or the exception a call raised, by type and message."""
    try:
        call()
    except Exception as err:
        return f"{type(err).__name__}: {str(err)[:140]}"
    return "ok"


def check_s3(tmp: Path) -> dict:
    """What s3fs can express of the lock's conditional writes and the store's marker protocol."""
    fs = s3fs_filesystem()
    lock = f"{BUCKET}/locks/demo.lock"
    found: dict[str, object] = {}

    created = fs.pipe_file(lock, b'{"owner": "a"}', mode="create")
    found["create_if_absent"] = {
        "how": 'fs.pipe_file(path, body, mode="create") -> PutObject If-None-Match: *',
        "first": "ok, ETag " + str(created.get("ETag")),
        "second": _outcome(lambda: fs.pipe_file(lock, b'{"owner": "b"}', mode="create")),
        "holder_after": fs.cat_file(lock).decode(),
    }

    def create_by_open():
        with fs.open(lock, "xb") as f:
            f.write(b'{"owner": "c"}')

    found["create_if_absent_open_xb"] = {"how": 'fs.open(path, "xb")', "second": _outcome(create_by_open)}

    etag = fs.info(lock)["ETag"]
    swapped = fs.pipe_file(lock, b'{"owner": "a", "renewed": 1}', IfMatch=etag)
    found["compare_and_swap"] = {
        "how": "fs.pipe_file(path, body, IfMatch=etag): an undocumented extra kwarg passed to PutObject",
        "current_etag": "ok, new ETag " + str(swapped.get("ETag")),
        "stale_etag": _outcome(lambda: fs.pipe_file(lock, b'{"owner": "b"}', IfMatch=etag)),
        "holder_after": fs.cat_file(lock).decode(),
    }

    current = fs.info(lock)["ETag"]
    with fs.open(lock, "rb") as f:
        read_etag, body = f.details["ETag"], f.read()
    found["read_with_version"] = {
        "how": 'fs.open(path, "rb"): HEAD for details["ETag"], then GET with If-Match of that ETag',
        "etag_matches": read_etag == current,
        "body": body.decode(),
        "requests": 2,
    }

    found["compare_and_delete_rm_file"] = {
        "how": "fs.rm_file(path, IfMatch=stale_etag): s3fs drops the kwarg",
        "outcome": _outcome(lambda: fs.rm_file(lock, IfMatch=etag)),
        "lock_still_there": fs.exists(lock),
    }
    fs.pipe_file(lock, b'{"owner": "d"}', mode="create")
    bucket, key, _ = fs.split_path(lock)
    found["compare_and_delete_call_s3"] = {
        "how": 'fs.call_s3("delete_object", Bucket=, Key=, IfMatch=): the raw boto call through s3fs',
        "stale_etag": _outcome(lambda: fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)),
        "lock_still_there": fs.exists(lock),
        "current_etag": _outcome(
            lambda: fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=fs.info(lock)["ETag"])
        ),
        "lock_after": fs.exists(lock),
    }

    # A publish whose fs.put fails midway must not write the marker.
    src = tmp / "failing"
    for i in range(8):
        (src / f"part-{i}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"part-{i}.bin").write_bytes(os.urandom(200_000))
    lpaths = [str(src / f"part-{i}.bin") for i in range(8)] + [str(src / "vanished.bin")]
    base = f"{BUCKET}/failing/v1"

    def publish():
        fs.put(lpaths, [f"{base}/{Path(p).name}" for p in lpaths])
        fs.pipe_file(f"{base}/{MARKER}", b"")

    outcome = _outcome(publish)
    found["marker_after_failed_put"] = {
        "outcome": outcome,
        "marker_written": fs.exists(f"{base}/{MARKER}"),
        "objects_left_unmarked": len(fs.find(base)),
    }

    # s3fs's default listings cache answers exists() from an earlier listing: a marker written since by
    # another process stays invisible to this one.
    import s3fs

    cached = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe_file(f"{BUCKET}/late/v1/data.json", b"{}")
    cached.ls(f"{BUCKET}/late/v1")
    fs.pipe_file(f"{BUCKET}/late/v1/{MARKER}", b"")
    found["default_listings_cache"] = {
        "how": "S3FileSystem() defaults (use_listings_cache=True, no expiry): ls, then another writer's marker",
        "exists_sees_marker": cached.exists(f"{BUCKET}/late/v1/{MARKER}"),
        "fresh_fs_sees_marker": fs.exists(f"{BUCKET}/late/v1/{MARKER}"),
    }
    found["object_storage_path"] = check_object_storage_path(tmp)
    return found


def check_object_storage_path(tmp: Path) -> dict:
    """Airflow's ObjectStoragePath on the same server, without and with an Airflow connection.

    Which s3fs it wraps, whether ``open("xb")`` reaches If-None-Match, whether ``use_listings_cache=False``
    can be passed, and whether a marker another writer adds after a listing is seen.
    """
    os.environ.setdefault("AIRFLOW_HOME", str(tmp / "airflow"))
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AIRFLOW_CONN_STORE_BENCH"] = json.dumps(
        {"conn_type": "aws", "login": "test", "password": "test", "extra": {"endpoint_url": endpoint}}
    )
    try:
        from airflow.sdk import ObjectStoragePath
    except Exception as err:
        return {"import": f"{type(err).__name__}: {err}"}
    found: dict[str, object] = {}
    writer = s3fs_filesystem()
    for conn_id in (None, "store_bench"):
        path = ObjectStoragePath(
            f"s3://{BUCKET}/osp-{conn_id}/demo.lock", conn_id=conn_id, use_listings_cache=False
        )

        def create(path=path):
            with path.open("xb") as f:
                f.write(b"{}")

        folder = path.parent / "v1"
        (folder / "data.json").write_bytes(b"{}")
        list(folder.iterdir())
        writer.pipe_file(f"{BUCKET}/osp-{conn_id}/v1/{MARKER}", b"")
        found[f"conn_id={conn_id}"] = {
            "fs": f"{type(path.fs).__module__}.{type(path.fs).__name__}",
            "open_xb_first": _outcome(create),
            "open_xb_second": _outcome(create),
            "listings_cache_of_path_ops": path.__wrapped__.fs.dircache.use_listings_cache,
            "listings_cache_of_path_fs": path.fs.dircache.use_listings_cache,
            "marker_added_after_iterdir_seen": (folder / MARKER).exists(),
        }
    found["write_bytes_has_mode"] = "mode" in ObjectStoragePath.write_bytes.__code__.co_varnames
    found["rename_on_s3"] = "s3fs mv: copy then delete, not atomic"
    return found


def check_local(tmp: Path) -> dict:
    """What fsspec's LocalFileSystem gives for the staging rename and for the lock file."""
    from fsspec.implementations.local import LocalFileSystem

    fs = LocalFileSystem(skip_instance_cache=True)
    root = tmp / "local-store"
    found: dict[str, object] = {}

    def staged(name: str) -> Path:
        folder = root / ".staging" / f"things__v1.{name}"
        folder.mkdir(parents=True)
        (folder / "data.json").write_text("{}")
        (folder / MARKER).write_text("")
        return folder

    staging, target = staged("a"), root / "things" / "v1"
    target.parent.mkdir(parents=True)
    inode = staging.stat().st_ino
    fs.mv(str(staging), str(target))
    found["mv_staging_to_absent_target"] = {
        "how": "fs.mv -> shutil.move -> os.rename when the target is absent and its parent exists",
        "renamed_in_place": target.stat().st_ino == inode,
    }
    staging, elsewhere = staged("c"), root / "models" / "m1"  # models/ does not exist yet
    inode = staging.stat().st_ino
    fs.mv(str(staging), str(elsewhere))
    found["mv_staging_to_target_without_parent"] = {
        "how": "fs.mv where os.rename fails (no parent folder; also across devices): shutil.move copies, then deletes",
        "renamed_in_place": elsewhere.stat().st_ino == inode,
        "marker_at_target": (elsewhere / MARKER).is_file(),
    }
    shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / "data.json").write_text("half written")  # a crashed writer's leftover, no marker
    staging = staged("b")
    fs.mv(str(staging), str(target))
    found["mv_staging_onto_leftover"] = {
        "how": "fs.mv onto an existing folder: shutil.move moves the staging folder inside it",
        "marker_at_target": (target / MARKER).is_file(),
        "nested_as": sorted(p.name for p in target.iterdir()),
    }

    lock = root / "locks" / "demo.lock"
    lock.parent.mkdir(parents=True)
    other_writer = {"done": False}
    real_exists = fs.exists

    def exists_then_someone_creates(path, **kwargs):
        answer = real_exists(path, **kwargs)
        if not other_writer["done"]:
            other_writer["done"] = True
            lock.write_bytes(b'{"owner": "other"}')
        return answer

    fs.exists = exists_then_someone_creates
    outcome = _outcome(lambda: fs.pipe_file(str(lock), b'{"owner": "me"}', mode="create"))
    fs.exists = real_exists
    found["pipe_file_create_local"] = {
        "how": 'AbstractFileSystem.pipe_file(mode="create"): exists() then open("wb")',
        "outcome_when_created_in_between": outcome,
        "holder_after": lock.read_text(),
    }
    lock.unlink()
    with fs.open(str(lock), "xb") as f:
        seen_mid_write = lock.read_bytes()
        f.write(b'{"owner": "me"}')
    found["open_xb_local"] = {
        "how": 'fs.open(path, "xb"): O_EXCL create, body written after',
        "reader_sees_before_close": seen_mid_write.decode(),
    }
    found["transaction_temp_dir"] = {
        "how": "fs.transaction writes to tempfile.mkstemp() and shutil.moves each file at commit",
        "same_device_as_store": os.stat(tempfile.gettempdir()).st_dev == os.stat(root).st_dev,
        "folders": "per file only: no folder publish, no flock guard",
    }
    return found


def work_guarantees(tmp: Path) -> dict:
    import aiobotocore
    import botocore
    import fsspec
    import s3fs

    return {
        "versions": {
            "s3fs": s3fs.__version__,
            "aiobotocore": aiobotocore.__version__,
            "botocore": botocore.__version__,
            "fsspec": fsspec.__version__,
        },
        "s3": check_s3(tmp),
        "local": check_local(tmp),
    }


# --- the parent: server, data, alternating children --------------------------------------------


def run_worker(side: str, args, env: dict, **paths: Path) -> dict:
    child_env = dict(env)
    if side in ("fsspec", "guarantees"):
        child_env["PYTHONPATH"] = args.fsspec_path
    else:
        child_env.pop("PYTHONPATH", None)
    cmd = [sys.executable, __file__, "--worker", side, "--lookups", str(args.lookups)]
    for name, value in paths.items():
        cmd += [f"--{name}", str(value)]
    proc = subprocess.run(cmd, env=child_env, stdout=subprocess.PIPE, text=True, cwd=REPO, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions_here() -> dict:
    import boto3
    import botocore
    import moto
    import upath

    return {
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "moto": moto.__version__,
        "universal_pathlib": upath.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="per side; even, so each goes first as often")
    parser.add_argument("--big-mib", type=int, default=50)
    parser.add_argument("--lookups", type=int, default=20, help="calls averaged per exists / listing figure")
    parser.add_argument("--fsspec-path", default="/tmp/fsspec-pkgs", help="where s3fs and its botocore live")
    parser.add_argument("--worker", choices=["ours", "fsspec", "guarantees"], help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "guarantees":
        print(json.dumps(work_guarantees(args.tmp)))
        return
    if args.worker:
        work = work_ours if args.worker == "ours" else work_fsspec
        print(json.dumps(work(args.key, args.src, args.cache, args.lookups)))
        return

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    sys.path.insert(0, str(REPO))
    from tests.support.s3_server import TEST_CREDENTIALS, MotoS3

    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    server = MotoS3().start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "TUNEOPS_S3_CONN_ID"}
        env.update({"AWS_ENDPOINT_URL": server.endpoint, **TEST_CREDENTIALS})
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        seed_catalog(client)
        src = tmp / "artifact"
        expected = make_artifact(src, args.big_mib)
        sizes = sorted(p.stat().st_size for p in src.rglob("*") if p.is_file())
        runs: dict[str, list[dict]] = {"ours": [], "fsspec": []}
        for i in range(args.repeats):
            for side in ("ours", "fsspec") if i % 2 == 0 else ("fsspec", "ours"):
                result = run_worker(
                    side, args, env, key=f"runs/{side}-{i}", src=src, cache=tmp / f"cache-{side}-{i}"
                )
                if digest(Path(result.pop("fetched"))) != expected:
                    raise SystemExit(f"{side} repeat {i}: the fetched folder differs from the published one")
                if result.pop("listed") != CATALOG_COMPLETE:
                    raise SystemExit(
                        f"{side} repeat {i}: listing did not find the {CATALOG_COMPLETE} complete folders"
                    )
                runs[side].append(result)
        guarantees = run_worker("guarantees", args, env, tmp=tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    medians = {side: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for side, rs in runs.items()}
    ratios = {m: medians["fsspec"][m] / medians["ours"][m] for m in medians["fsspec"] if m in medians["ours"]}
    print(
        json.dumps(
            {
                "artifact": {"files": len(sizes), "bytes": sum(sizes), "largest": sizes[-1]},
                "repeats": args.repeats,
                "versions": {"ours": versions_here(), "fsspec": guarantees.pop("versions")},
                "median": medians,
                "ratio_fsspec_over_ours": ratios,
                "runs": runs,
                "guarantees": guarantees,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
