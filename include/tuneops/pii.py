"""Pattern-based PII detection (emails, phone numbers, card numbers, IP addresses).

Plain regular expressions, no model downloads, so it runs offline. Card numbers are
confirmed with the Luhn checksum to keep order numbers and ids from counting as cards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Checked in this order; each kind's matches are blanked before the next, so a card
# number is not also counted as a phone number.
PII_PATTERNS: dict[str, re.Pattern] = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "card": re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
    "ip": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    "phone": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b"
    ),
}


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> dict[str, int]:
    """Count PII hits by kind in ``text``; kinds with no hit are left out."""
    hits: dict[str, int] = {}
    if not text:
        return hits
    for kind, pattern in PII_PATTERNS.items():
        spans = [m.span() for m in pattern.finditer(text) if kind != "card" or _luhn_ok(m.group())]
        if spans:
            hits[kind] = len(spans)
            for start, end in spans:
                text = text[:start] + " " * (end - start) + text[end:]
    return hits


def redact(text: str, kinds: Iterable[str] | None = None) -> tuple[str, dict[str, int]]:
    """``text`` with each PII hit replaced by a typed placeholder (``<EMAIL>``, ``<PHONE>``, ...).

    ``kinds`` limits redaction to those kinds (default: all). Returns the redacted text and
    the hits by kind, as ``find_pii`` counts them.
    """
    hits: dict[str, int] = {}
    if not text:
        return text, hits
    wanted = set(PII_PATTERNS if kinds is None else kinds)
    for kind, pattern in PII_PATTERNS.items():
        if kind not in wanted:
            continue

        def replace(match, kind=kind):
            if kind == "card" and not _luhn_ok(match.group()):
                return match.group()
            hits[kind] = hits.get(kind, 0) + 1
            return f"<{kind.upper()}>"

        text = pattern.sub(replace, text)
    return text, hits


def has_pii(text: str) -> bool:
    return bool(find_pii(text))
