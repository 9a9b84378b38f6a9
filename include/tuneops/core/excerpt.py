"""Short excerpts of user-supplied values for error messages.

An error names the bad input but never echoes all of it: a value may be a whole file, a secret,
or megabytes of a request body.
"""

from __future__ import annotations

import os


def excerpt(value: object, limit: int = 120) -> str:
    """``repr`` of ``value`` (of its ``str`` for a path), cut to about ``limit`` characters."""
    text = repr(str(value) if isinstance(value, os.PathLike) else value)
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 25, 10)]}... ({len(text)} characters in all)"
