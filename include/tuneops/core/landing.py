"""Landing roots: the only places raw batches are read from, and the only user files tuneops removes.

A batch URI (a file, a folder, or an ``s3://`` prefix) must resolve inside one of the configured
landing roots before anything is read: locally both the path as written and the path with every
symlink resolved, on S3 the key prefix. ``file://`` URIs, other schemes and ``..`` segments are
refused outright. Inside a batch folder, a symlink whose target leaves the folder is refused,
naming it. The roots are the embedded landing folder ``<TUNEOPS_HOME>/landing``, the artifact
store's ``landing`` prefix, and whatever ``TUNEOPS_LANDING_ROOTS`` adds (comma-separated local
folders and ``s3://bucket/prefix`` URIs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tuneops.core.excerpt import excerpt

LANDING_ROOTS_ENV = "TUNEOPS_LANDING_ROOTS"


class OutsideLandingRoots(ValueError):
    """A batch URI that is not inside any landing root, or that could lead out of one."""


def parse_roots(value: str | None) -> tuple[str, ...]:
    """The roots named in a ``TUNEOPS_LANDING_ROOTS`` value (comma-separated), normalised."""
    roots = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        _check_syntax(item, f"{LANDING_ROOTS_ENV} entry")
        roots.append(
            item.rstrip("/") if item.startswith("s3://") else str(Path(item).expanduser().absolute())
        )
    return tuple(roots)


def _check_syntax(uri: str, what: str) -> None:
    if uri.startswith("file:"):
        raise OutsideLandingRoots(f"{what} {excerpt(uri)} is a file: URI; pass a plain path instead")
    scheme, sep, _ = uri.partition("://")
    if sep and scheme != "s3":
        raise OutsideLandingRoots(
            f"{what} {excerpt(uri)} has scheme {scheme!r}; only local paths and s3:// are read"
        )
    rest = uri[len("s3://") :] if uri.startswith("s3://") else uri
    if ".." in rest.replace("\\", "/").split("/"):
        raise OutsideLandingRoots(f"{what} {excerpt(uri)} has a '..' segment; pass the path without it")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _roots_text(roots: Sequence[str]) -> str:
    return ", ".join(roots) or "(none)"


def confine(uri: str, roots: Sequence[str]) -> str:
    """``uri`` normalised (absolute path, or ``s3://`` without a trailing slash) once it is inside a root.

    Raises OutsideLandingRoots naming the roots and the setting that extends them when it is not,
    or when it is a ``file:`` URI, has another scheme, or has a ``..`` segment.
    """
    uri = str(uri).strip()
    _check_syntax(uri, "batch_uri")
    refusal = (
        f"batch_uri {excerpt(uri)} is outside every landing root ({_roots_text(roots)}); land the batch "
        f"under one of them, or add its folder or s3:// prefix to {LANDING_ROOTS_ENV} (comma-separated)"
    )
    if uri.startswith("s3://"):
        normalised = uri.rstrip("/")
        if "//" in normalised[len("s3://") :]:
            raise OutsideLandingRoots(f"batch_uri {excerpt(uri)} has an empty path segment; remove the '//'")
        if not any(_inside(normalised, root) for root in roots if root.startswith("s3://")):
            raise OutsideLandingRoots(refusal)
        return normalised
    written = os.path.abspath(os.path.expanduser(uri))
    real = os.path.realpath(written)
    local_roots = [root for root in roots if not root.startswith("s3://")]
    as_written = any(
        _inside(written, root) or _inside(written, os.path.realpath(root)) for root in local_roots
    )
    resolved = any(_inside(real, os.path.realpath(root)) for root in local_roots)
    if not (as_written and resolved):
        if as_written:
            refusal = (
                f"batch_uri {excerpt(uri)} resolves through a symlink to {real}, outside every landing root "
                f"({_roots_text(roots)}); land the files themselves, or add that location to {LANDING_ROOTS_ENV}"
            )
        raise OutsideLandingRoots(refusal)
    return written


def check_member(folder: Path, entry: Path) -> None:
    """Refuse ``entry`` of a batch ``folder`` when it is a symlink whose target is outside the folder."""
    if not entry.is_symlink():
        return
    target = os.path.realpath(entry)
    if not _inside(target, os.path.realpath(folder)):
        raise OutsideLandingRoots(
            f"{entry} is a symlink to {target}, outside the batch folder {folder}; replace the link with "
            "the file itself (tuneops reads and may quarantine only files inside the landing folder)"
        )


def default_roots(home: Path, artifact_root: str) -> tuple[str, ...]:
    """The roots tuneops owns: ``<home>/landing`` and the artifact store's ``landing`` prefix."""
    if artifact_root.startswith("s3://"):
        store_landing = artifact_root.rstrip("/") + "/landing"
    else:
        store_landing = str(Path(artifact_root).expanduser().resolve() / "landing")
    return tuple(dict.fromkeys([str(home / "landing"), store_landing]))
