"""Batches of example indices for the trainer, and how much of a padded batch is real tokens.

Padding every batch to its longest member wastes compute on pad tokens; grouping examples
of similar length (HF's ``LengthGroupedSampler``) recovers most of it while keeping the
epoch random enough to train on.
"""

from __future__ import annotations

import random


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """One epoch of ``range(n)`` shuffled with ``seed`` and cut into batches (the last may be short)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, mega_batch_mult: int = 50
) -> list[list[int]]:
    """One epoch of batches of indices into ``lengths``, each holding examples of similar length.

    The shuffled indices are cut into mega-batches of ``batch_size * mega_batch_mult``, each
    sorted longest first and cut into batches; the batch order is then shuffled so training
    does not see lengths in order, except that the batch holding the longest example comes
    first, so an out-of-memory shows at step 1 rather than mid-run. Every index appears
    exactly once; the same ``seed`` gives the same batches. Raises ValueError for a
    non-positive ``batch_size`` or ``mega_batch_mult``.
    """
    if batch_size <= 0 or mega_batch_mult <= 0:
        raise ValueError(
            f"batch_size and mega_batch_mult must be positive, got {batch_size} and {mega_batch_mult}"
        )
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * mega_batch_mult
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    if batches:
        # Each batch is sorted longest first, so its first index is its longest example.
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def padding_efficiency(lengths: list[int], batches: list[list[int]]) -> float:
    """Real tokens / tokens processed when each batch is padded to its longest member (1.0 = no padding)."""
    real = sum(lengths[i] for batch in batches for i in batch)
    processed = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return real / processed if processed else 1.0
