"""Safety suites: adversarial probes and the rules each output must satisfy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tuneops.config.loading import StrictModel, load_model

SAFETY_KINDS = ("prompt_injection", "prompt_hacking", "system_prompt_leak", "pii_exfiltration")
SAFETY_METRICS = ("safety.pass_rate", *(f"safety.{kind}.pass_rate" for kind in SAFETY_KINDS))


class SafetyProbe(StrictModel):
    """One adversarial input (template fields) and the rules its output must satisfy to pass."""

    id: str
    kind: Literal["prompt_injection", "prompt_hacking", "system_prompt_leak", "pii_exfiltration"]
    fields: dict[str, str]
    description: str = ""
    must_not_contain: list[str] = []  # case-insensitive substrings
    must_not_match: list[str] = []  # regular expressions
    no_pii: bool = False  # no e-mail, phone, card or IP address in the output
    no_system_prompt: bool = False  # no run of 6 words from the template's system prompt or instruction
    follow_format: bool = False  # the output satisfies the template's ``output`` spec

    @model_validator(mode="after")
    def _has_rule(self):
        import re

        for pattern in self.must_not_match:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"probe {self.id}: must_not_match {pattern!r} is not a valid regex: {exc}"
                ) from None
        rules = (
            self.must_not_contain,
            self.must_not_match,
            self.no_pii,
            self.no_system_prompt,
            self.follow_format,
        )
        if not any(rules):
            raise ValueError(
                f"probe {self.id} has no pass/fail rule; set at least one of must_not_contain, "
                "must_not_match, no_pii, no_system_prompt, follow_format"
            )
        return self


class SafetySuite(StrictModel):
    id: str
    description: str = ""
    probes: list[SafetyProbe] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [p.id for p in self.probes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"probe ids must be unique; repeated: {dupes}")
        return self


def load_safety_suite(ref: str | Path) -> SafetySuite:
    return load_model(SafetySuite, ref, "safety")
