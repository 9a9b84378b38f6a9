"""Pattern-based PII detection (emails, phone numbers, card numbers, IP addresses).

Plain regular expressions, no model downloads, so it runs offline. Card numbers are
confirmed with the Luhn checksum to keep order numbers and ids from counting as cards.
Detection and redaction take time linear in the text's length, whatever the text: the
serving endpoint redacts every request and answer it logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Characters of an e-mail's local part (before the "@").
_LOCAL = "A-Za-z0-9._%+-"
_EMAIL_TAIL = r"@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"

# Checked in this order; each kind's matches are blanked before the next, so a card
# number is not also counted as a phone number.
PII_PATTERNS: dict[str, re.Pattern] = {
    # An e-mail is a local part holding a word boundary, then "@domain.tld". The pattern is
    # tried only where a run of local-part characters starts, and the run's first boundary
    # is found in one pass (its first character, or where word characters and .%+- first
    # meet), so a long run without an "@" costs one scan. The obvious `\b[...]+@...` is
    # tried again at every boundary inside such a run: quadratic, tens of seconds for 100 kB
    # of "1.1.1.". Both find an e-mail in exactly the same strings; `find_pii` and `redact`
    # report the same spans the obvious pattern would (`_email_spans`).
    "email": re.compile(
        rf"(?<![{_LOCAL}])(?:\b[{_LOCAL}]|[A-Za-z0-9_]+[.%+-]|[.%+-]+[A-Za-z0-9_])[{_LOCAL}]*{_EMAIL_TAIL}"
    ),
    "card": re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
    "ip": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    "phone": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b"
    ),
}

# A run of local-part characters (possibly empty) ending at an "@".
_LOCAL_BEFORE_AT = re.compile(rf"(?<![{_LOCAL}])[{_LOCAL}]*@")
# Where an e-mail can start: a word boundary before a local-part character.
_LOCAL_START = re.compile(rf"\b(?=[{_LOCAL}])")
# An e-mail from a known start: local part, "@", domain.
_EMAIL_FROM_START = re.compile(rf"[{_LOCAL}]+{_EMAIL_TAIL}")


def _email_spans(text: str) -> list[tuple[int, int]]:
    """The e-mails in ``text``, as ``\\b[local]+@domain`` scanned left to right finds them.

    Every start inside one run of local-part characters gives that pattern the same answer
    (the local part must reach the "@"), so each run before an "@" is tried once, from its
    first word boundary at or after where the previous e-mail ended.
    """
    spans: list[tuple[int, int]] = []
    end = 0
    for run in _LOCAL_BEFORE_AT.finditer(text):
        at = run.end() - 1
        start = _LOCAL_START.search(text, max(run.start(), end), at)
        if start is None:
            continue
        match = _EMAIL_FROM_START.match(text, start.start())
        if match:
            spans.append(match.span())
            end = match.end()
    return spans


def _spans(kind: str, text: str) -> list[tuple[int, int]]:
    if kind == "email":
        return _email_spans(text)
    return [m.span() for m in PII_PATTERNS[kind].finditer(text) if kind != "card" or _luhn_ok(m.group())]


def _replace_spans(text: str, spans: list[tuple[int, int]], replacement: Callable[[int, int], str]) -> str:
    """``text`` with each of the ordered, disjoint ``spans`` replaced, in one pass."""
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts += (text[last:start], replacement(start, end))
        last = end
    parts.append(text[last:])
    return "".join(parts)


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
    for kind in PII_PATTERNS:
        spans = _spans(kind, text)
        if spans:
            hits[kind] = len(spans)
            text = _replace_spans(text, spans, lambda start, end: " " * (end - start))
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
    for kind in PII_PATTERNS:
        if kind not in wanted:
            continue
        spans = _spans(kind, text)
        if spans:
            hits[kind] = len(spans)
            text = _replace_spans(text, spans, lambda start, end, kind=kind: f"<{kind.upper()}>")
    return text, hits
