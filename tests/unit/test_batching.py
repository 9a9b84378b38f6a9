"""Length-grouped batches: a permutation of the epoch, reproducible, and with less padding."""

import random

import pytest

from tuneops.training.batching import length_grouped_batches, padding_efficiency, random_batches


def _skewed_lengths(n=2000, seed=0):
    """Mostly short examples and a long tail, like ticket prompts with the odd long body."""
    rng = random.Random(seed)
    return [int(rng.lognormvariate(4, 0.6)) + 1 for _ in range(n)]


def test_every_index_appears_exactly_once():
    lengths = _skewed_lengths(1003)
    batches = length_grouped_batches(lengths, batch_size=16, seed=3, mega_batch_mult=4)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(0 < len(batch) <= 16 for batch in batches)


def test_same_seed_same_batches_and_another_seed_other_batches():
    lengths = _skewed_lengths()
    assert length_grouped_batches(lengths, 16, seed=7) == length_grouped_batches(lengths, 16, seed=7)
    # Another seed composes other batches, not just the same batches in another order.
    members = [
        {frozenset(b) for b in length_grouped_batches(lengths, 16, seed=s, mega_batch_mult=5)} for s in (7, 8)
    ]
    assert members[0] != members[1]


def test_batch_with_the_longest_example_comes_first():
    lengths = _skewed_lengths()
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    for seed in range(5):
        assert longest in length_grouped_batches(lengths, 16, seed=seed, mega_batch_mult=5)[0]


def test_batch_order_is_shuffled_not_sorted_by_length():
    lengths = _skewed_lengths()
    # One mega-batch holds the whole epoch, so without the shuffle the order would be sorted.
    batches = length_grouped_batches(lengths, 16, seed=0, mega_batch_mult=len(lengths))
    tops = [max(lengths[i] for i in batch) for batch in batches]
    assert tops[1:] != sorted(tops[1:], reverse=True)


def test_grouping_pads_less_than_random_batches_on_skewed_lengths():
    lengths = _skewed_lengths()
    grouped = padding_efficiency(lengths, length_grouped_batches(lengths, 16, seed=0))
    naive = padding_efficiency(lengths, random_batches(len(lengths), 16, seed=0))
    assert naive < 0.7 and grouped > 0.9


def test_equal_lengths_need_no_padding():
    lengths = [12] * 100
    assert padding_efficiency(lengths, length_grouped_batches(lengths, 16, seed=0)) == 1.0
    assert padding_efficiency(lengths, random_batches(100, 16, seed=0)) == 1.0


def test_padding_efficiency_counts_pad_tokens():
    # Batch [4, 2] pads to 2 x 4 = 8 slots for 6 real tokens; batch [3] has none.
    assert padding_efficiency([4, 2, 3], [[0, 1], [2]]) == pytest.approx(9 / 11)


def test_random_batches_cover_the_epoch():
    batches = random_batches(37, 8, seed=1)
    assert sorted(i for batch in batches for i in batch) == list(range(37))
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]


def test_non_positive_batch_size_is_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches([1, 2, 3], 0, seed=0)
