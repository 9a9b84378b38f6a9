"""The artifact store: a local folder or an ``s3://bucket/prefix``, with atomic publishing.

Every published artifact is a folder under a key (``datasets/<name>/<version>``). It becomes
visible only when complete: locally it is renamed into place from a staging folder, on S3
a ``_SUCCESS`` marker is written after every other object. Readers trust only marked
folders, so a crash mid-write never leaves a partial artifact that looks finished.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneops.core.excerpt import excerpt

MARKER = "_SUCCESS"


class ArtifactNotFound(FileNotFoundError):
    """A key or URI that should hold a published artifact holds none."""


def check_key(key: str) -> str:
    """``key`` without surrounding slashes; raises ValueError for a key that could leave the store.

    A ``..`` or ``.`` segment, an empty segment or a backslash is refused, so no key (or URI
    handed in as a Param) reaches a file or object outside the store's root.
    """
    stripped = key.strip("/")
    parts = stripped.split("/")
    if stripped and ("\\" in stripped or any(part in ("", ".", "..") for part in parts)):
        raise ValueError(
            f"artifact key {excerpt(key)} has a '..', '.' or empty segment or a backslash; keys name folders "
            "inside the artifact store: pass the URI an earlier step published"
        )
    return stripped


def _split_s3(uri: str) -> tuple[str, str]:
    without = uri[len("s3://") :]
    bucket, _, prefix = without.partition("/")
    if len(bucket) < 3:
        raise ValueError(f"S3 URI {uri!r} has no valid bucket name; expected s3://<bucket>/<prefix>")
    return bucket, prefix.strip("/")


#: The boto3 client argument each resolved variable stands for (see ``tuneops.core.connections``).
_CLIENT_ARGUMENTS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_ENDPOINT_URL": "endpoint_url",
    "AWS_DEFAULT_REGION": "region_name",
}


def s3_client(credentials: Mapping[str, str] | None = None):
    """A new boto3 S3 client built from ``credentials`` (``AWS_*`` names, as ``Settings.credentials``).

    ``None`` resolves the connection that ``TUNEOPS_S3_CONN_ID`` names now. What the credentials
    leave out (all of it when no connection is named) comes from boto3's own chain: the AWS_*
    variables (``AWS_ENDPOINT_URL`` for MinIO or moto), the shared files, an instance role. A new
    session each time: boto3's default one keeps the credentials it first found. Raises
    ConnectionSetupError for a named connection that is missing or unusable.
    """
    import boto3

    if credentials is None:
        credentials = _named_s3_credentials()
    arguments = {
        _CLIENT_ARGUMENTS[key]: value for key, value in credentials.items() if key in _CLIENT_ARGUMENTS
    }
    return boto3.session.Session().client("s3", **arguments)


def _named_s3_credentials() -> dict[str, str]:
    from tuneops.core.connections import S3_CONN_ENV

    conn_id = os.environ.get(S3_CONN_ENV)
    if not conn_id:
        return {}
    # Once per process and definition, as before: a batch of many files asks the secrets backend once.
    return dict(_resolved_s3_connection(conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")))


@functools.lru_cache(maxsize=8)
def _resolved_s3_connection(conn_id: str, definition: str | None) -> tuple[tuple[str, str], ...]:
    """The connection's credentials; ``definition`` (its ``AIRFLOW_CONN_*`` value) is part of the key."""
    from tuneops.core.connections import resolve_s3_connection

    return tuple(sorted(resolve_s3_connection(conn_id).items()))


class ArtifactStore:
    """Publish and read artifact folders under ``root`` (a local path or ``s3://bucket/prefix``).

    ``credentials`` (``AWS_*`` names, as ``Settings.credentials``) build its S3 clients; without them
    the connection ``TUNEOPS_S3_CONN_ID`` names is resolved at the first S3 call (see ``s3_client``).
    """

    def __init__(
        self, root: str, cache_dir: Path | None = None, credentials: Mapping[str, str] | None = None
    ):
        self.root = root
        self.is_s3 = root.startswith("s3://")
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "tuneops-cache"
        self._credentials = credentials
        if self.is_s3:
            self.bucket, self.prefix = _split_s3(root)
        else:
            self.local_root = Path(root.removeprefix("file://")).expanduser().resolve()

    @classmethod
    def from_settings(cls, settings) -> ArtifactStore:
        return cls(settings.artifact_root, cache_dir=settings.cache_dir, credentials=settings.credentials)

    def client(self):
        """A new boto3 S3 client with this store's credentials."""
        return s3_client(self._s3_credentials())

    def _s3_credentials(self) -> Mapping[str, str]:
        if self._credentials is None:  # resolved once: a secrets backend is not asked at every call
            self._credentials = _named_s3_credentials()
        return self._credentials

    def uri(self, key: str) -> str:
        key = check_key(key)
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix}/{key}" if self.prefix else f"s3://{self.bucket}/{key}"
        return str(self.local_root / key)

    def key_of(self, uri: str) -> str:
        """The key of ``uri`` in this store; raises ValueError for a URI outside it."""
        root = self.uri("").rstrip("/")
        if not uri.startswith(root + "/"):
            raise ValueError(
                f"{excerpt(uri, 200)} is not inside the artifact store {root}; pass a URI that an earlier step published"
            )
        return check_key(uri[len(root) + 1 :])

    def s3_key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _local(self, key: str) -> Path:
        return self.local_root / check_key(key)

    def exists(self, key: str) -> bool:
        """True when a complete artifact folder is published under ``key``."""
        if self.is_s3:
            return _s3_object_exists(self.bucket, f"{self.s3_key(key)}/{MARKER}", self.client())
        return (self._local(key) / MARKER).is_file()

    def publish_dir(self, local_dir: Path, key: str) -> str:
        """Publish ``local_dir`` under ``key`` atomically and return its URI.

        Publishing a key that is already complete is a no-op: content-addressed keys make
        a rerun with the same inputs reuse what exists instead of duplicating it.
        """
        local_dir = Path(local_dir)
        if self.exists(key):
            return self.uri(key)
        if self.is_s3:
            client = self.client()
            base = self.s3_key(key)
            # A folder fetched from a store carries its marker: it goes up last, never with the files.
            files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p != local_dir / MARKER)
            for file in files:
                client.upload_file(str(file), self.bucket, f"{base}/{file.relative_to(local_dir).as_posix()}")
            client.put_object(Bucket=self.bucket, Key=f"{base}/{MARKER}", Body=b"")
            return self.uri(key)
        with self.publishing(key) as staging:
            shutil.copytree(local_dir, staging, dirs_exist_ok=True)
        return self.uri(key)

    @contextmanager
    def publishing(self, key: str) -> Iterator[Path]:
        """A folder to write the artifact ``key`` into, published atomically when the block succeeds.

        Locally the folder is a staging folder inside the store (renamed into place: no second copy),
        for S3 one under ``cache_dir/staging``; both are named after ``key``, so ``clean_staging`` can
        find what a killed writer left. A failed block removes its folder and publishes nothing.
        """
        flat = _flat(key)
        base = self.local_root / ".staging" if not self.is_s3 else self.cache_dir / "staging" / self.bucket
        folder = base / f"{flat}.{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        try:
            yield folder
            if self.is_s3:
                self.publish_dir(folder, key)
            elif not self.exists(key):
                target = self._local(key)
                (folder / MARKER).write_text("")
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # left by a crash before the marker was written
                    shutil.rmtree(target)
                os.replace(folder, target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def clean_staging(self, key: str) -> list[str]:
        """Remove what writers of ``key`` (and of keys below ``key.``) left behind when they were killed.

        That is their staging folders and, on S3, objects of unmarked folders under ``key`` and
        ``key.checkpoints``. Only the caller may be writing ``key`` (it holds the key's lease), so
        nothing in use is removed. Returns what was removed.
        """
        flat = _flat(key)
        removed = []
        base = self.local_root / ".staging" if not self.is_s3 else self.cache_dir / "staging" / self.bucket
        if base.is_dir():
            for entry in base.iterdir():
                if entry.name.startswith(flat + "."):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(str(entry))
        if self.is_s3:
            for prefix in (check_key(key), f"{check_key(key)}.checkpoints"):
                removed += self._remove_unmarked(prefix)
        return removed

    def _remove_unmarked(self, prefix: str) -> list[str]:
        """Delete the objects of folders under ``prefix`` (S3) that have no marker: uploads cut short."""
        client = self.client()
        folders: dict[str, list[str]] = {}
        base = self.s3_key(prefix)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + "/"):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(base) + 1 :]
                folder = rest.split("/", 1)[0] if prefix.endswith(".checkpoints") else ""
                folders.setdefault(folder, []).append(obj["Key"])
        removed = []
        for folder, keys in folders.items():
            marker = f"{base}/{folder}/{MARKER}" if folder else f"{base}/{MARKER}"
            if marker in keys:
                continue
            for object_key in keys:
                client.delete_object(Bucket=self.bucket, Key=object_key)
            removed.append(f"s3://{self.bucket}/{base}/{folder}".rstrip("/"))
        return removed

    def remove_dir(self, key: str) -> None:
        """Delete the artifact folder ``key``; its marker goes first, so it is never seen half-deleted."""
        if self.is_s3:
            client = self.client()
            base = self.s3_key(key)
            client.delete_object(Bucket=self.bucket, Key=f"{base}/{MARKER}")
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + "/"
            ):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=self.bucket, Key=obj["Key"])
            return
        folder = self._local(key)
        (folder / MARKER).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    def fetch_dir(self, key: str) -> Path:
        """Return a local folder holding the published artifact under ``key``."""
        if not self.exists(key):
            raise ArtifactNotFound(f"no complete artifact at {self.uri(key)}")
        if not self.is_s3:
            return self._local(key)
        return download_s3_dir(self.uri(key), self.cache_dir, self._s3_credentials())

    def evict_cached(self, key: str) -> None:
        """Drop this machine's copy of an S3 artifact (a damaged download); the store's own is untouched."""
        if self.is_s3:
            evict_s3_copy(self.uri(key), self.cache_dir)

    def write_json(self, key: str, obj: Any) -> str:
        """Publish a single JSON document as the folder ``key`` holding ``data.json``."""
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "data.json").write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            return self.publish_dir(Path(tmp), key)

    def read_json(self, key: str) -> Any:
        return json.loads((self.fetch_dir(key) / "data.json").read_text())

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write one object (an append-only log file, for example) atomically; returns its URI."""
        if self.is_s3:
            self.client().put_object(Bucket=self.bucket, Key=self.s3_key(key), Body=data)
            return self.uri(key)
        path = self._local(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        if self.is_s3:
            return self.client().get_object(Bucket=self.bucket, Key=self.s3_key(key))["Body"].read()
        return self._local(key).read_bytes()

    def list_objects(self, prefix: str) -> list[str]:
        """Keys of every object (file) below ``prefix``, recursively, sorted."""
        prefix = check_key(prefix)
        if self.is_s3:
            base = self.s3_key(prefix) + "/"
            strip = len(self.prefix) + 1 if self.prefix else 0
            found = []
            for page in (
                self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            ):
                found += [obj["Key"][strip:] for obj in page.get("Contents", [])]
            return sorted(found)
        folder = self.local_root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            p.relative_to(self.local_root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def list_keys(self, prefix: str) -> list[str]:
        """Keys of complete artifacts directly under ``prefix``, sorted."""
        prefix = check_key(prefix)
        if self.is_s3:
            client = self.client()
            paginator = client.get_paginator("list_objects_v2")
            found = set()
            base = self.s3_key(prefix) + "/"
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(base) :]
                    name, _, tail = rest.partition("/")
                    if tail == MARKER:
                        found.add(f"{prefix}/{name}")
            return sorted(found)
        folder = self.local_root / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" for p in folder.iterdir() if (p / MARKER).is_file())


def _flat(key: str) -> str:
    """``key`` as one file name (staging folders are named after the key they will publish)."""
    return check_key(key).replace("/", "__")


def _s3_object_exists(bucket: str, key: str, client) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def download_s3_dir(uri: str, cache_dir: Path, credentials: Mapping[str, str] | None = None) -> Path:
    """Download a published S3 folder into ``cache_dir`` once; later calls reuse the copy.

    ``credentials`` as for ``s3_client`` (None: the connection ``TUNEOPS_S3_CONN_ID`` names).
    """
    bucket, prefix = _split_s3(uri)
    local = Path(cache_dir) / "s3" / bucket / prefix
    if (local / MARKER).is_file():
        return local
    client = s3_client(credentials)
    staging = local.parent / f".{local.name}.{uuid.uuid4().hex}"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            dest = staging / obj["Key"][len(prefix) + 1 :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(dest))
    if not (staging / MARKER).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ArtifactNotFound(f"no complete artifact at {uri}")
    if local.exists():
        shutil.rmtree(local)
    os.replace(staging, local)
    return local


def evict_s3_copy(uri: str, cache_dir: Path) -> None:
    """Forget the local copy ``download_s3_dir`` keeps of ``uri``, so the next read downloads it again."""
    bucket, prefix = _split_s3(uri)
    shutil.rmtree(Path(cache_dir) / "s3" / bucket / prefix, ignore_errors=True)


def list_files(uri: str) -> list[str]:
    """URIs of the files directly under a local folder or an S3 prefix (or the URI itself if a file).

    Local entries are named as they are in the folder, never by their symlink targets; a symlink
    whose target leaves the folder raises ``tuneops.core.landing.OutsideLandingRoots`` naming it.
    """
    if uri.startswith("s3://"):
        bucket, prefix = _split_s3(uri)
        client = s3_client()
        if _s3_object_exists(bucket, prefix, client):
            return [uri]
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix + "/", Delimiter="/"
        ):
            out += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])]
        return sorted(out)
    from tuneops.core.landing import check_member

    path = Path(uri).expanduser().absolute()
    if path.is_file():
        check_member(path.parent, path)
        return [str(path)]
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith((".", "_")))
        for entry in entries:
            check_member(path, entry)
        return [str(p) for p in entries if p.is_file()]
    raise ArtifactNotFound(f"{uri} does not exist: pass a file or folder path, or an s3://bucket/prefix URI")


def fetch_file(uri: str, cache_dir: Path) -> Path:
    """A local path for a file URI: the path itself, or a downloaded copy of an S3 object."""
    if not uri.startswith("s3://"):
        path = Path(uri).expanduser()
        if not path.is_file():
            raise ArtifactNotFound(f"{uri} is not a file")
        return path
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    dest = Path(cache_dir) / "s3-files" / bucket / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{uuid.uuid4().hex}")
    try:
        s3_client().download_file(bucket, key, str(tmp))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise ArtifactNotFound(f"{uri} is not an object") from None
        raise
    os.replace(tmp, dest)
    return dest


def remove_file(uri: str) -> None:
    """Delete one file (local path or S3 object); a file already gone is not an error.

    A local symlink is unlinked itself, never its target. Callers confine ``uri`` first
    (``tuneops.core.landing.confine``): this removes whatever it is given.
    """
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
        return
    Path(uri).unlink(missing_ok=True)
