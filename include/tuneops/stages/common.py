"""What every stage needs: the artifact store of the settings, and a published input by URI."""

from __future__ import annotations

from tuneops.core.settings import Settings
from tuneops.core.store import ArtifactStore


def store_of(settings: Settings) -> ArtifactStore:
    return ArtifactStore.from_settings(settings)


def published_key(uri: str, store: ArtifactStore) -> str:
    """The store key of ``uri``; raises ValueError when nothing is published there."""
    key = store.key_of(uri)
    if not store.exists(key):
        raise ValueError(f"{uri} holds no published artifact; run the step that produces it first")
    return key
