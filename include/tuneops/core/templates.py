"""Prompt templates: what a template file holds and how it renders.

One module for the dataset builder, the trainer, evaluation and serving, so every runtime
renders a record exactly as training saw it. Rendering runs in a sandboxed Jinja2
environment; ``format: chat`` templates go through the tokenizer's own chat template.
"""

from __future__ import annotations

import functools
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tuneops.core.hashing import hash_json


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputSpec(_Frozen):
    """The structure a template promises for its responses; evaluation checks every output against it."""

    format: Literal["json"] = "json"
    required_keys: list[str] = []


class PromptTemplate(_Frozen):
    """A versioned prompt template.

    ``format: instruction`` renders ``prompt`` as the whole prompt text. ``format: chat``
    renders ``prompt`` as the user message and lays out system, user and assistant turns
    with the tokenizer's own chat template (``apply_chat_template``).
    """

    id: str
    format: Literal["instruction", "chat"] = "instruction"
    description: str = ""
    system: str = ""
    instruction: str = ""
    prompt: str
    response: str = "{{ response }}"
    output: OutputSpec | None = None


class TemplateError(ValueError):
    """A template is malformed or references a field the data does not provide."""


def sandbox():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template_hash(template: PromptTemplate) -> str:
    return hash_json(template.model_dump())[:16]


def adds_special_tokens(template: PromptTemplate) -> bool:
    """Whether prompt text is tokenized with the tokenizer's special tokens (BOS).

    Chat-formatted text already holds every special token the model's chat template wants,
    so training, evaluation and serving tokenize it as is.
    """
    return template.format != "chat"


def check_template(template: PromptTemplate, fields: set[str], tokenizer=None) -> None:
    """Raise TemplateError if the template cannot render these fields, before any row is rendered.

    Checks Jinja syntax, that every variable is in ``fields``, and that a chat template has a
    tokenizer with a chat template of its own.
    """
    from jinja2 import TemplateSyntaxError, meta

    env = sandbox()
    provided = fields | {"system", "instruction"}
    for part in ("prompt", "response"):
        try:
            used = meta.find_undeclared_variables(env.parse(getattr(template, part)))
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template '{template.id}' {part}: syntax error at line {exc.lineno}: {exc.message}"
            ) from None
        unknown = sorted(used - provided)
        if unknown:
            raise TemplateError(
                f"template '{template.id}' {part} uses field(s) {unknown} that the data does not provide; "
                f"available fields: {sorted(provided)}. Add them to the dataset config's 'columns'/'keep' or fix the template."
            )
    if template.format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            f"template '{template.id}' has format 'chat' but "
            + (
                "the dataset config names no tokenizer"
                if tokenizer is None
                else "its tokenizer has no chat template"
            )
            + "; set the dataset config's 'tokenizer' to a model with a chat template, or use format: instruction"
        )


def _context(template: PromptTemplate, record: dict) -> dict:
    return {
        **record,
        "system": template.system,
        "instruction": record.get("instruction") or template.instruction,
    }


@functools.lru_cache(maxsize=8)
def _compiled(template_json: str):
    env = sandbox()
    spec = json.loads(template_json)
    return env.from_string(spec["prompt"]), env.from_string(spec["response"])


def render_example(
    template: PromptTemplate, record: dict, tokenizer=None, with_response: bool = True
) -> tuple[str, str]:
    prompt_t, response_t = _compiled(template.model_dump_json())
    context = _context(template, record)
    body = prompt_t.render(context)
    response = response_t.render(context) if with_response else ""
    if template.format != "chat":
        return body, response
    turns = ([{"role": "system", "content": template.system}] if template.system else []) + [
        {"role": "user", "content": body}
    ]
    prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    if not with_response:
        return prompt, ""
    full = tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": response}], tokenize=False)
    if not full.startswith(prompt):
        raise TemplateError(
            f"template '{template.id}': the tokenizer's chat template does not render the conversation as the "
            "generation prompt followed by the reply, so the reply cannot be marked for the loss; use format: instruction"
        )
    # The reply keeps the chat template's end-of-turn marker (the model must learn to stop),
    # without the trailing newline some templates put after it.
    return prompt, full[len(prompt) :].rstrip("\n")


def render_rows(records: list[dict], template: PromptTemplate, tokenizer=None) -> list[dict]:
    """Render each canonical record into ``{"id", "prompt", "response"}``; the response is what the loss sees."""
    rows = []
    for rec in records:
        prompt, response = render_example(template, rec, tokenizer)
        rows.append({"id": rec["id"], "prompt": prompt, "response": response})
    return rows


def render_prompt(template: PromptTemplate, record: dict, tokenizer=None) -> str:
    """The prompt part alone for one record (what a served model receives)."""
    return render_example(template, record, tokenizer, with_response=False)[0]


def prompts_for_inputs(inputs: list, template: PromptTemplate | None, tokenizer) -> list[str]:
    """The prompt text for each input: a prompt string, a ``{"prompt": ...}`` record, or template fields.

    Template fields (e.g. ``{"subject": ..., "input": ...}``) are rendered with ``template``, the
    one the model was trained with. Raises ValueError for fields when there is no template.
    """
    prompts = []
    for record in inputs:
        if isinstance(record, str):
            prompts.append(record)
        elif "prompt" in record:
            prompts.append(record["prompt"])
        elif template is not None:
            prompts.append(render_prompt(template, record, tokenizer))
        else:
            raise ValueError(
                "each input must be a prompt string, a {'prompt': ...} record, or template fields"
            )
    return prompts
