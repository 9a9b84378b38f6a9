"""Drift statistics of live traffic against training data: PSI, vocabulary, output labels."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

WORD = re.compile(r"[a-z]{2,}")
PSI_BINS = 10
EPS = 1e-4


def psi(reference: list[float], current: list[float], bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference``, on reference-quantile bins."""
    import numpy as np

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    ref_share, cur_share = np.clip(ref_share, EPS, None), np.clip(cur_share, EPS, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def category_psi(reference: Counter, current: Counter) -> float:
    """PSI between two category mixes (categories missing on one side count as ``EPS``)."""
    cats = sorted(set(reference) | set(current))
    ref_total, cur_total = sum(reference.values()) or 1, sum(current.values()) or 1
    total = 0.0
    for c in cats:
        r, q = max(reference[c] / ref_total, EPS), max(current[c] / cur_total, EPS)
        total += (q - r) * math.log(q / r)
    return total


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def oov_rate(prompts: list[str], vocab: set[str]) -> float:
    """Share of the words in ``prompts`` that are not in ``vocab``."""
    tokens = [w for p in prompts for w in words(p)]
    return sum(w not in vocab for w in tokens) / len(tokens) if tokens else 0.0


def label_of(response: str, key: str) -> str:
    try:
        value = json.loads(response).get(key)
    except (json.JSONDecodeError, AttributeError):
        return "<invalid>"
    return str(value) if value not in (None, "") else "<missing>"
