"""Dataset manifests for tests that write a prompt dataset folder by hand."""

from __future__ import annotations

from tuneops.contracts import DatasetManifest
from tuneops.core.templates import PromptTemplate, adds_special_tokens, template_hash


def manifest_for(template: PromptTemplate, **fields) -> dict:
    """A complete, valid ``manifest.json`` body for a dataset rendered with ``template``."""
    values = {
        "dataset": "test",
        "version": "v1",
        "counts": {},
        "dropped": {},
        "pii_redacted": {},
        "token_lengths": None,
        "tokenizer": None,
        "source_batches": [],
        "golden": None,
        "cleaning": {},
        "splits": {},
        "feedback": {"rows": 0, "feedback_ids": []},
        "template_id": template.id,
        "template_hash": template_hash(template),
        "template_format": template.format,
        "add_special_tokens": adds_special_tokens(template),
        "template": template.model_dump(mode="json"),
        "library_version": "test",
        "cleaning_version": 0,
    }
    return DatasetManifest(**{**values, **fields}).model_dump(mode="json")
