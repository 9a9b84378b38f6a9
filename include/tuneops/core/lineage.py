"""Where a row or a model came from: the one schema of the lineage tags every runtime writes and reads.

A registered version carries its lineage as MLflow tags named ``tuneops.<field>``. They are
written from a ``Lineage`` (``Lineage.tags``); readers use the names here (``dataset_uri_of``,
the ``*_TAG`` constants), so no module spells a tag name of its own.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Rows exported from human corrections carry this id prefix before the feedback id.
FEEDBACK_ID_PREFIX = "feedback-"

TAG_PREFIX = "tuneops."
#: A registered version's content fingerprint (base + adapter): one version per fingerprint.
FINGERPRINT_TAG = "tuneops.model_fingerprint"
#: The sha256 of the registered weights and of the model config, checked by every loader.
WEIGHTS_TAG = "tuneops.weights_sha256"
CONFIG_TAG = "tuneops.model_config_sha256"


class Lineage(BaseModel):
    """What a registered version was made from; ``labels`` are the caller's (``dag_id``, ``dag_run_id``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_version: str
    dataset_digest: str
    dataset_uri: str
    template_id: str
    template_hash: str
    recipe_hash: str
    base_model: str
    git_commit: str
    gate_report: str = ""
    labels: dict[str, str] = {}

    def tags(self) -> dict[str, str]:
        """The MLflow tags: ``tuneops.<field>`` for each field and each label."""
        fields = self.model_dump(exclude={"labels"})
        return {TAG_PREFIX + k: str(v) for k, v in {**fields, **self.labels}.items()}


def dataset_uri_of(tags: dict[str, str]) -> str | None:
    """The prompt dataset a version was trained on, or None for a version without lineage."""
    return tags.get(TAG_PREFIX + "dataset_uri")
