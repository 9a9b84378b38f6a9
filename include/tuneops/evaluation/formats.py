"""Whether a text meets a template's promised output format, as the gate's ``format_valid`` judges it."""

from __future__ import annotations

import json

from tuneops.core.templates import PromptTemplate


def json_problem(text, required_keys) -> str:
    """The problem with ``text`` as a JSON object with ``required_keys`` (values non-empty), or '' if none.

    The ``json_format`` metric module scores outputs with it; serving and monitoring check
    corrections with it, without importing ``evaluate``.
    """
    try:
        obj = json.loads(text)
    except (TypeError, ValueError) as exc:
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"JSON {type(obj).__name__}, not an object"
    missing = [k for k in required_keys if obj.get(k) in (None, "", [], {})]
    return f"missing or empty keys: {', '.join(missing)}" if missing else ""


def correction_problem(correction: str, template: PromptTemplate | None) -> str:
    """Why ``correction`` cannot be a training response for ``template`` ('' when it can).

    The same check as the gate's ``format_valid`` metric, so serving, monitoring and the gate agree.
    A template without an output format accepts anything.
    """
    if template is None or template.output is None:
        return ""
    try:
        return json_problem(correction, template.output.required_keys)
    except RecursionError:  # json.loads gives up on arrays/objects nested thousands deep
        return "not JSON: nested too deeply"
