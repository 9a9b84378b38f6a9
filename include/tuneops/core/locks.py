"""Cross-process lease locks kept in the artifact store, so every worker that shares a store shares them.

A lock is one object, ``locks/<name>.lock``, holding JSON ``{owner, acquired_at, expires_at, token}``.
It is taken by an atomic create-if-absent (locally a hard link of a fully written file, which fails if
the name exists; on S3 a conditional ``PutObject`` with ``If-None-Match: *``) and given back by deleting
it, but only while it is still the object we created. A lease whose ``expires_at`` has passed is stale:
its holder is presumed dead and the next caller breaks it. So ``ttl_seconds`` must be longer than the
longest time the lock is held, and hosts sharing a store need clocks synchronised well within it.

Stale locks are broken, and locks released, with a compare-and-delete so that two callers can never both
believe they hold the lock: on S3 a ``DeleteObject`` with ``If-Match: <ETag>``, locally a re-read and
unlink under an ``flock`` on a guard file beside the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)

# 412: the object exists (If-None-Match) or changed (If-Match); 409: a concurrent write to the key won.
_S3_CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_S3_MISSING = ("NoSuchKey", "404", "NotFound")


class LockTimeout(TimeoutError):
    """Another owner held the lock for longer than the caller was willing to wait."""


@dataclass(frozen=True)
class Lease:
    """A held lock: who holds it, since and until when (epoch seconds).

    With a heartbeat the lease is renewed while held; ``lost`` is set if a renewal found the
    lock taken over (the holder was presumed dead), and the holder must then stop writing.
    """

    name: str
    uri: str
    owner: str
    acquired_at: float
    expires_at: float
    token: str
    lost: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


def lock_key(name: str) -> str:
    """The artifact-store key of the lock called ``name``."""
    return f"locks/{name.strip('/')}.lock"


@contextmanager
def store_lock(
    store: ArtifactStore,
    name: str,
    *,
    owner: str,
    ttl_seconds: float = 600,
    wait_seconds: float = 300,
    poll_seconds: float = 0.2,
    heartbeat_seconds: float | None = None,
) -> Iterator[Lease]:
    """Hold the lock ``locks/<name>`` in the artifact store for the duration of the ``with`` block.

    ``owner`` says who holds it (a DAG run and task, a host and pid) for people reading a timeout.
    The lease lasts ``ttl_seconds``; past that another caller may break it, so pick a TTL longer than
    the block can run. While someone else holds a live lease, polls every ``poll_seconds``.

    With ``heartbeat_seconds`` (well below ``ttl_seconds``) a thread renews the lease that often, by
    a compare-and-swap, so a long job can hold a short lease: if the holder dies, the lease lapses
    within ``ttl_seconds`` instead of blocking the retry for the longest the job could take.

    Yields the ``Lease``. Raises ``LockTimeout`` when the lock is still held by someone else after
    ``wait_seconds``. On exit the lock is deleted if it is still ours; if it expired and was taken over
    meanwhile, a warning is logged and the other holder's lock is left alone.
    """
    lock = _S3LockObject(store, name) if store.is_s3 else _LocalLockFile(store, name)
    lease, version = _acquire(lock, name, owner, ttl_seconds, wait_seconds, poll_seconds)
    heartbeat = (
        _Heartbeat(lock, lease, version, ttl_seconds, heartbeat_seconds) if heartbeat_seconds else None
    )
    try:
        yield lease
    finally:
        if heartbeat is not None:
            version = heartbeat.stop()
        _release(lock, lease, version)


class _Heartbeat:
    """Renews a held lease every ``every`` seconds until stopped; sets ``lease.lost`` if it was taken."""

    def __init__(self, lock, lease: Lease, version: str, ttl_seconds: float, every: float):
        self.lock, self.lease, self.version = lock, lease, version
        self.ttl_seconds, self.every = ttl_seconds, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            renewed = replace(self.lease, expires_at=time.time() + self.ttl_seconds)
            try:
                version = self.lock.replace_if_unchanged(self.version, _encode(renewed))
            except Exception:  # a store hiccup: the lease still runs until its expiry; try again
                log.warning(
                    "renewing lock %s failed; retrying in %ss", self.lock.uri, self.every, exc_info=True
                )
                continue
            if version is None:
                log.error(
                    "lock %s was taken over while %r held it (its lease lapsed): stop writing",
                    self.lock.uri,
                    self.lease.owner,
                )
                self.lease.lost.set()
                return
            self.version = version

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return self.version


def _acquire(lock, name, owner, ttl_seconds, wait_seconds, poll_seconds) -> tuple[Lease, str]:
    deadline = time.monotonic() + wait_seconds
    while True:
        now = time.time()
        lease = Lease(name, lock.uri, owner, now, now + ttl_seconds, uuid.uuid4().hex)
        version = lock.try_create(_encode(lease))
        if version is not None:
            return lease, version
        found = lock.read()
        if found is None:  # released between our attempt and our read: try again at once
            continue
        body, held_version = found
        holder = _decode(body, lock.uri)
        if holder["expires_at"] <= time.time():
            log.warning(
                "breaking stale lock %s: its owner %r let it expire at %s without releasing it",
                lock.uri,
                holder["owner"],
                _when(holder["expires_at"]),
            )
            lock.delete_if_unchanged(held_version)
            continue
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"lock {name!r} ({lock.uri}) is still held by {holder['owner']!r} after waiting "
                f"{wait_seconds:g} s; its lease expires at {_when(holder['expires_at'])}. Wait and retry "
                f"(a lease past its expiry is broken automatically), or, if that owner is known to be dead, "
                f"delete the lock object at {lock.uri}."
            )
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))


def _release(lock, lease: Lease, version: str) -> None:
    if lock.delete_if_unchanged(version):
        return
    found = lock.read()
    now_held_by = _decode(found[0], lock.uri)["owner"] if found else "nobody"
    log.warning(
        "lock %s was no longer ours when %r released it (lease expired at %s, now held by %r): the "
        "protected work may have overlapped with another holder's; raise ttl_seconds above the longest hold",
        lock.uri,
        lease.owner,
        _when(lease.expires_at),
        now_held_by,
    )


def _encode(lease: Lease) -> bytes:
    fields = ("owner", "acquired_at", "expires_at", "token")
    return json.dumps({field: getattr(lease, field) for field in fields}, sort_keys=True).encode()


def _decode(body: bytes, uri: str) -> dict:
    try:
        holder = json.loads(body)
        return {"owner": str(holder["owner"]), "expires_at": float(holder["expires_at"])}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"the lock object at {uri} is not a lease written by tuneops.core.locks ({err!r}); "
            "delete it if no process is using that lock"
        ) from err


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class _LocalLockFile:
    """The lock as a file; its version is its content, which the per-lease token makes unique."""

    def __init__(self, store: ArtifactStore, name: str):
        self.path = store.local_root / lock_key(name)
        self.uri = str(self.path)
        # Never deleted: flock on a file that can be unlinked and recreated would not exclude anyone.
        self.guard = self.path.with_name(f".{self.path.name}.guard")

    def try_create(self, body: bytes) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written in full before it is linked into place, so no reader ever sees a half-written lease.
        staged = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        staged.write_bytes(body)
        try:
            os.link(staged, self.path)
        except FileExistsError:
            return None
        finally:
            staged.unlink()
        return body.decode()

    def read(self) -> tuple[bytes, str] | None:
        try:
            body = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return body, body.decode()

    def replace_if_unchanged(self, version: str, body: bytes) -> str | None:
        """Write ``body`` over the lock if it still holds ``version``; its new version, or None."""
        with open(self.guard, "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            found = self.read()
            if found is None or found[1] != version:
                return None
            staged = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            staged.write_bytes(body)
            os.replace(staged, self.path)
            return body.decode()

    def delete_if_unchanged(self, version: str) -> bool:
        # Creators need no guard (they only create when absent); breakers and releasers share it, so
        # between this re-read and the unlink nobody else can delete and re-create the lock.
        with open(self.guard, "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            found = self.read()
            if found is None or found[1] != version:
                return False
            self.path.unlink()
            return True


class _S3LockObject:
    """The lock as an S3 object; its version is the ETag S3 gave it."""

    def __init__(self, store: ArtifactStore, name: str):
        self.bucket = store.bucket
        self.key = store.s3_key(lock_key(name))
        self.uri = store.uri(lock_key(name))
        self.client = store.client()

    def try_create(self, body: bytes) -> str | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*", ContentType="application/json"
            )
        except ClientError as err:
            if _error_code(err) in _S3_CONDITION_FAILED:
                return None
            raise
        return response["ETag"]

    def read(self) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if _error_code(err) in _S3_MISSING:
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def replace_if_unchanged(self, version: str, body: bytes) -> str | None:
        """Write ``body`` over the lock if its ETag is still ``version`` (``If-Match``); the new ETag, or None."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, IfMatch=version, ContentType="application/json"
            )
        except ClientError as err:
            if _error_code(err) in _S3_CONDITION_FAILED + _S3_MISSING:
                return None
            raise
        return response["ETag"]

    def delete_if_unchanged(self, version: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except ClientError as err:
            if _error_code(err) in _S3_CONDITION_FAILED + _S3_MISSING:
                return False
            raise
        return True


def _error_code(err) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
