"""Drift statistics of one sample against another: PSI, vocabulary, output labels.

The one implementation of these figures, here below both users: monitoring
(``tuneops.monitoring.monitor``) compares live traffic with the training prompts, EDA
(``tuneops.data.eda``) compares a batch with the previous one.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

# Letters only, apostrophes inside a word kept ("don't"), any script: order numbers and
# amounts would otherwise fill the top n-grams and make every new batch's vocabulary look
# unfamiliar, and ASCII-only words would split "résumé" into pieces.
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
PSI_BINS = 10
# Stands in for an empty bin's share, so one empty bin gives a large PSI rather than infinity.
EPS = 1e-4


def psi(reference, current, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference``, on reference-quantile bins.

    Both are non-empty sequences of numbers. Ties (integer lengths) can make several quantiles
    coincide; only distinct cuts are kept, so there may be fewer than ``bins`` bins.
    """
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
    """The lowercased words of ``text`` (``WORD``: letters of any script, no digits)."""
    return WORD.findall(text.lower())


def oov_rate(prompts: list[str], vocab: set[str]) -> float:
    """Share of the words in ``prompts`` that are not in ``vocab``."""
    tokens = [w for p in prompts for w in words(p)]
    return sum(w not in vocab for w in tokens) / len(tokens) if tokens else 0.0


def label_of(response: str, key: str) -> str:
    """The ``key`` of a JSON response as a category: ``<invalid>`` when not JSON, ``<missing>`` when absent."""
    try:
        value = json.loads(response).get(key)
    except (json.JSONDecodeError, AttributeError):
        return "<invalid>"
    return str(value) if value not in (None, "") else "<missing>"
