"""What every stage needs: a published input by its URI."""

from __future__ import annotations

from tuneops.core.store import ArtifactStore


def published_key(uri: str, store: ArtifactStore) -> str:
    """The store key of ``uri``; raises ValueError when nothing is published there."""
    key = store.key_of(uri)
    if not store.exists(key):
        raise ValueError(f"{uri} holds no published artifact; run the step that produces it first")
    return key
