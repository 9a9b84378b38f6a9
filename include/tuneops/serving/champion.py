"""Generate with a registered alias outside the server (``tuneops generate``), logging each request."""

from __future__ import annotations

import time
import uuid

from tuneops.core.inference_log import log_record, log_requests
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore


def generate_with_champion(
    inputs: list, model_name: str, alias: str = "champion", settings: Settings | None = None
) -> list[dict]:
    """Generate for prompt strings or template-field records with ``models:/<name>@<alias>``; logs each request.

    The version's weights, tokenizer and template are read as data and checked against the
    registered weights hash (``tuneops.registry.registry.load_version_files``); nothing from the artifact
    store is executed. Raises ValueError when the alias does not exist, and
    ``tuneops.registry.registry.ModelIntegrityError`` when the weights are not the ones registered.
    """
    from tuneops.core.templates import adds_special_tokens, prompts_for_inputs
    from tuneops.models.generation import generate, load_model
    from tuneops.registry.registry import alias_version, load_version_files

    settings = settings or load_settings()
    version = alias_version(model_name, alias, settings)
    if version is None:
        raise ValueError(f"model {model_name!r} has no '{alias}' alias yet; run llmops_finetune first")
    files = load_version_files(model_name, str(version.version), settings)
    model, tokenizer = load_model(str(files.path))
    prompts = prompts_for_inputs(inputs, files.template, tokenizer)
    started = time.monotonic()
    outputs = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=files.max_new_tokens,
        add_special_tokens=adds_special_tokens(files.template) if files.template is not None else True,
        decoding=files.decoding,
    )
    latency = (time.monotonic() - started) / max(len(inputs), 1)
    records = [
        log_record(
            request_id=uuid.uuid4().hex,
            model=model_name,
            version=str(version.version),
            alias=alias,
            mode="prompt" if isinstance(inp, str) else "inputs",
            prompt=prompt,
            inputs=None if isinstance(inp, str) else inp,
            response=out,
            latency_s=latency,
        )
        for inp, prompt, out in zip(inputs, prompts, outputs, strict=True)
    ]
    log_requests(records, ArtifactStore.from_settings(settings))
    return records
