import numpy as np

from tuneops.data.dedup import (
    estimated_similarity,
    lsh_bands,
    near_duplicate_clusters,
    shingle_hashes,
    signatures,
)

BASE = "Hi, this is Dana. Acme Cloud crashes every time I open the reports screen. Order 12345. Please fix this today."


def jaccard(a: str, b: str) -> float:
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


def test_signatures_estimate_jaccard_and_are_deterministic():
    variants = [
        BASE,
        BASE.replace("12345", "54321"),
        BASE.replace("Dana", "Priya"),
        "Something else entirely, no overlap.",
    ]
    sigs = signatures(variants)
    assert sigs.dtype == np.uint32 and sigs.shape == (4, 128)
    assert np.array_equal(sigs, signatures(variants))
    for i in range(1, 4):
        assert abs(estimated_similarity(sigs[0], sigs[i]) - jaccard(BASE, variants[i])) < 0.12


def test_case_and_whitespace_do_not_hide_a_copy():
    assert np.array_equal(signatures([BASE])[0], signatures(["  " + BASE.upper().replace(" ", "   \n")])[0])


def test_bands_put_the_lsh_midpoint_just_below_the_threshold():
    for threshold in (0.5, 0.7, 0.85, 0.95):
        bands, rows = lsh_bands(threshold)
        assert bands * rows <= 128
        assert threshold - 0.1 < (1 / bands) ** (1 / rows) <= threshold


def test_clusters_join_near_copies_and_keep_the_earliest_as_representative():
    texts = [
        "Something unrelated about a refund for an invoice.",
        BASE,
        BASE.replace("12345", "99999"),  # one number changed: a near copy
        "Different ticket: the tracking number for my order shows no updates at all.",
        BASE.replace("12345", "99999").replace("today", "today!"),  # a copy of the copy
    ]
    clusters = near_duplicate_clusters(signatures(texts), threshold=0.8)
    assert clusters.tolist() == [0, 1, 1, 3, 1]


def test_threshold_decides_what_counts_as_near():
    a, b = BASE, BASE.replace("Acme Cloud crashes every time", "The Acme Cloud app freezes whenever")
    similarity = jaccard(a, b)
    assert 0.4 < similarity < 0.8
    sigs = signatures([a, b])
    assert near_duplicate_clusters(sigs, threshold=0.9).tolist() == [0, 1]
    assert near_duplicate_clusters(sigs, threshold=max(similarity - 0.15, 0.05)).tolist() == [0, 0]


def test_no_rows_give_an_empty_index_array():
    clusters = near_duplicate_clusters(np.empty((0, 128), dtype=np.uint32), threshold=0.85)
    assert clusters.shape == (0,) and np.arange(3)[clusters].tolist() == []
