"""Near-duplicate detection: MinHash signatures and LSH banding, vectorised with numpy.

A text becomes the set of its character 5-grams (lower-cased, whitespace collapsed); a
signature holds, for each of ``num_perm`` seeded hash functions, the smallest hash over that
set, so the share of equal positions in two signatures estimates the Jaccard similarity of
the two sets. LSH cuts signatures into bands; texts that share a band are candidates, and a
candidate joins a cluster only when its estimated similarity reaches the threshold.
Everything is seeded: same texts, same signatures, same clusters, on every machine.
"""

from __future__ import annotations

import re

import numpy as np

SHINGLE = 5
NUM_PERM = 128
_SEED = 20261125
_SPACE = re.compile(r"\s+")
_FNV_PRIME = np.uint64(1099511628211)
_MASK32 = np.uint64(0xFFFFFFFF)


def _perm_params(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_hashes(text: str, k: int = SHINGLE) -> np.ndarray:
    """Distinct 32-bit hashes of the character ``k``-grams of ``text`` (the whole text if shorter)."""
    data = np.frombuffer(_SPACE.sub(" ", text.lower()).strip().encode("utf-8"), dtype=np.uint8).astype(
        np.uint64
    )
    if len(data) < k:
        data = np.concatenate([data, np.zeros(k - len(data), dtype=np.uint64)])
    n = len(data) - k + 1
    h = np.full(n, 14695981039346656037, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = (h ^ data[j : j + n]) * _FNV_PRIME
    return np.unique((h >> np.uint64(32)) ^ (h & _MASK32))


def signatures(texts: list[str], num_perm: int = NUM_PERM) -> np.ndarray:
    """MinHash signatures, shape ``(len(texts), num_perm)``, dtype uint32."""
    a, b = _perm_params(num_perm)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i, text in enumerate(texts):
            x = shingle_hashes(text)
            # Multiply-shift hashing: (a*x + b) mod 2**64, keep the high 32 bits.
            out[i] = ((np.outer(a, x) + b[:, None]) >> np.uint64(32)).min(axis=1)
    return out


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """Bands and rows per band whose S-curve midpoint ``(1/b)**(1/r)`` sits just below ``threshold``.

    Erring low trades a few more candidates (checked against the threshold anyway) for
    fewer missed duplicates.
    """
    best = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        midpoint = (1 / bands) ** (1 / rows)
        if midpoint <= threshold and (best is None or midpoint > best[0]):
            best = (midpoint, bands, rows)
    return best[1], best[2]


def estimated_similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity between rows of ``sig_a`` and ``sig_b`` (broadcasting)."""
    return (sig_a == sig_b).mean(axis=-1)


def near_duplicate_clusters(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster id per row: rows whose estimated similarity reaches ``threshold`` share one.

    The cluster id is the index of the cluster's earliest row, so callers that order rows
    by priority (pinned first, then oldest) keep that row as the representative. No rows
    give an empty index array, usable to index with like any other.
    """
    n, num_perm = sigs.shape
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bands, rows = lsh_bands(threshold, num_perm)
    for band in range(bands):
        chunk = np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
        keys = chunk.view(np.dtype((np.void, chunk.dtype.itemsize * rows))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        if not len(shared):
            continue
        order = shared[np.argsort(inverse[shared], kind="stable")]
        groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
        for group in groups:
            # Check each member against the group's earliest row: linear, not quadratic, in
            # the size of a bucket full of templated text.
            head = group[0]
            similar = group[1:][estimated_similarity(sigs[group[1:]], sigs[head]) >= threshold]
            for member in similar:
                ra, rb = find(head), find(int(member))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.intp)
