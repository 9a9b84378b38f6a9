"""Prompt dataset at scale: tokenisation and builder throughput, padding waste of batching strategies.

Renders N sample tickets through the ``triage_v1`` template and, side by side in one run:
  (a) tokenises prompt + response with the tiny-llama tokenizer three ways: a plain Python
      loop one example at a time, ``datasets.Dataset.from_list(...).map(batched=True)`` with
      ``num_proc=1`` and with ``num_proc=2`` (from_list included in the time; all three give
      the same token ids);
  (b) from those token lengths, the padding efficiency (real tokens / tokens processed) of one
      epoch at batch size 16: shuffled batches padded to their longest member, length-grouped
      batches (``tuneops.training.batching``), and packing into fixed ``max_seq_len`` blocks.
  (c) runs the whole ``build_prompt_dataset`` (clean, redact, render, count tokens, MinHash,
      dedup and contamination check, split, save) on N validated records, in one process and
      with its default workers (one per 25k rows, up to the cores).
Prints examples/s and ratios, and the efficiency table.

    .venv/bin/python bench/prompt_batching.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def rendered_rows(n: int, seed: int) -> list[dict]:
    """``n`` sample tickets rendered to ``{"id", "prompt", "response"}`` with the triage_v1 template."""
    from tuneops.config import load_template
    from tuneops.core.sample_data import iter_tickets
    from tuneops.core.templates import render_rows

    records = [
        {"id": t["ticket_id"], "input": t["body"], "response": t["triage"], "subject": t["subject"]}
        for t in iter_tickets(n, seed)
    ]
    return render_rows(records, load_template("triage_v1"))


def token_ids_batch(batch: dict, tokenizer) -> dict:
    """Prompt ids (with special tokens) + response ids + EOS, as the trainer builds them."""
    prompts = tokenizer(batch["prompt"])["input_ids"]
    responses = tokenizer(batch["response"], add_special_tokens=False)["input_ids"]
    return {"input_ids": [p + r + [tokenizer.eos_token_id] for p, r in zip(prompts, responses, strict=True)]}


def tokenise_loop(rows: list[dict], tokenizer) -> list[list[int]]:
    eos = tokenizer.eos_token_id
    return [
        tokenizer(row["prompt"])["input_ids"]
        + tokenizer(row["response"], add_special_tokens=False)["input_ids"]
        + [eos]
        for row in rows
    ]


def tokenise_datasets(rows: list[dict], tokenizer, num_proc: int) -> list[list[int]]:
    from datasets import Dataset

    mapped = Dataset.from_list(rows).map(
        token_ids_batch,
        batched=True,
        num_proc=num_proc,
        fn_kwargs={"tokenizer": tokenizer},
        remove_columns=["id", "prompt", "response"],
    )
    return mapped["input_ids"]


def measure_tokenisation(rows: list[dict], tokenizer) -> tuple[list[dict], list[int]]:
    """Time each tokenisation method on ``rows``; returns the table and the token lengths."""
    methods = {
        "python loop, one example at a time": lambda: tokenise_loop(rows, tokenizer),
        "Dataset.from_list + map(batched=True, num_proc=1)": lambda: tokenise_datasets(rows, tokenizer, 1),
        "Dataset.from_list + map(batched=True, num_proc=2)": lambda: tokenise_datasets(rows, tokenizer, 2),
    }
    table, reference = [], None
    for name, run in methods.items():
        started = time.perf_counter()
        ids = run()
        seconds = time.perf_counter() - started
        if reference is None:
            reference = ids
        elif ids != reference:
            raise SystemExit(
                f"{name} gave other token ids than the loop; the comparison would be meaningless"
            )
        table.append({"method": name, "seconds": seconds, "examples_per_s": len(rows) / seconds})
    for row in table:
        row["vs_loop"] = row["examples_per_s"] / table[0]["examples_per_s"]
    return table, [len(ids) for ids in reference]


def packing_efficiency(lengths: list[int], block: int, split: bool) -> float:
    """Real tokens / block slots when examples are concatenated into ``block``-token blocks.

    ``split=True`` cuts the stream at block edges (TRL-style; only the last block pads, but an
    example can be cut in two); ``split=False`` starts a new block when the next example does
    not fit (examples longer than ``block`` are left out, as the trainer drops them).
    """
    kept = [n for n in lengths if n <= block]
    if split:
        return sum(kept) / (math.ceil(sum(kept) / block) * block)
    blocks, used = 0, block
    for n in kept:
        if used + n > block:
            blocks, used = blocks + 1, 0
        used += n
    return sum(kept) / (blocks * block)


def measure_batching(lengths: list[int], batch_size: int, max_seq_len: int, seed: int) -> list[dict]:
    """Padding efficiency and tokens processed for one epoch under each batching strategy."""
    from tuneops.training.batching import length_grouped_batches, padding_efficiency, random_batches

    real = sum(lengths)
    rows = [
        (
            "shuffled batches, pad to longest",
            padding_efficiency(lengths, random_batches(len(lengths), batch_size, seed)),
        ),
        (
            "length-grouped batches, pad to longest",
            padding_efficiency(lengths, length_grouped_batches(lengths, batch_size, seed)),
        ),
        (
            f"packing into {max_seq_len}-token blocks, split at edges",
            packing_efficiency(lengths, max_seq_len, split=True),
        ),
        (
            f"packing whole examples into {max_seq_len}-token blocks",
            packing_efficiency(lengths, max_seq_len, split=False),
        ),
    ]
    return [{"method": name, "efficiency": eff, "tokens_processed": real / eff} for name, eff in rows]


def measure_builder(n: int, seed: int, tmp: Path) -> list[dict]:
    """Time ``build_prompt_dataset`` on one batch of ``n`` records, in one process and with the default workers.

    Each run gets its own store, so neither reuses the other's version.
    """
    import json

    import pandas as pd

    from tuneops.config import load_dataset_config, load_template
    from tuneops.core.sample_data import generate_tickets
    from tuneops.core.store import ArtifactStore
    from tuneops.data import prompts
    from tuneops.models.base_model import resolve_tokenizer

    config = load_dataset_config("support_tickets").model_copy(update={"golden": None})
    records = [
        {
            "id": t["ticket_id"],
            "input": t["body"],
            "response": t["triage"],
            "label": t["channel"],
            "subject": t["subject"],
        }
        for t in generate_tickets(n, seed=seed)
    ]
    results = []
    default_rows_per_process = prompts.ROWS_PER_PROCESS
    for method, rows_per_process in (
        ("1 process", 10**12),
        ("default (one per 25k rows, up to the cores)", default_rows_per_process),
    ):
        store = ArtifactStore(str(tmp / f"store-{len(results)}"))
        batch = tmp / f"batch-{len(results)}"
        batch.mkdir()
        pd.DataFrame(records).to_parquet(batch / "data.parquet", index=False)
        meta = {
            "dataset": config.name,
            "batch_hash": f"bench{n}",
            "rows": n,
            "validated_at": "2026-11-25T00:00:00+00:00",
        }
        (batch / "meta.json").write_text(json.dumps(meta))
        key = f"validated/{config.name}/bench{n}"
        store.publish_dir(batch, key)
        resolve_tokenizer(config.tokenizer, store)  # built before the clock starts, as in a warm store
        prompts.ROWS_PER_PROCESS = rows_per_process
        started = time.perf_counter()
        result = prompts.build_prompt_dataset(
            [key], config, load_template(config.template), store, tmp / "cache"
        )
        seconds = time.perf_counter() - started
        results.append(
            {
                "method": method,
                "seconds": seconds,
                "examples_per_s": n / seconds,
                "counts": result["counts"],
                "dropped": result["dropped"],
            }
        )
    prompts.ROWS_PER_PROCESS = default_rows_per_process
    for r in results:
        r["vs_one"] = results[0]["seconds"] / r["seconds"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-seq-len", type=int, default=192, help="packing block size (tiny-local's train.max_seq_len)"
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            {
                "TUNEOPS_HOME": str(Path(tmp) / "home"),
                "HF_DATASETS_CACHE": str(Path(tmp) / "hf-datasets"),
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                # As in the Makefile: one Rust thread per process, so num_proc is the only parallelism.
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        os.environ.pop("TUNEOPS_ARTIFACT_ROOT", None)
        import datasets
        from transformers import AutoTokenizer

        from tuneops.core.settings import load_settings
        from tuneops.core.store import ArtifactStore
        from tuneops.models.base_model import resolve_tokenizer

        datasets.disable_progress_bars()
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_tokenizer("builtin:tiny-llama", ArtifactStore.from_settings(load_settings()))
        )
        started = time.perf_counter()
        rows = rendered_rows(args.rows, args.seed)
        render_seconds = time.perf_counter() - started

        # Part 1: tokenisation throughput.
        tokenisation, lengths = measure_tokenisation(rows, tokenizer)
        # Part 2: padding waste of each batching strategy, from the same token lengths.
        batching = measure_batching(lengths, args.batch_size, args.max_seq_len, args.seed)
        # Part 3: the whole builder (clean, render, count tokens, MinHash, dedup, split, save).
        builds = measure_builder(args.rows, args.seed, Path(tmp))

    print(
        f"{args.rows:,} tickets rendered in {render_seconds:.1f} s; tokens per example: mean {statistics.mean(lengths):.1f}, "
        f"median {statistics.median(lengths):.0f}, p95 {sorted(lengths)[int(0.95 * len(lengths))]}, max {max(lengths)}"
    )
    print(f"\n(a) tokenisation, {args.rows:,} examples")
    print(f"{'method':<52} {'seconds':>8} {'examples/s':>11} {'vs loop':>8}")
    for r in tokenisation:
        print(f"{r['method']:<52} {r['seconds']:>8.1f} {r['examples_per_s']:>11,.0f} {r['vs_loop']:>7.2f}x")
    print(f"\n(b) one epoch at batch size {args.batch_size}: {sum(lengths):,} real tokens")
    print(f"{'method':<52} {'efficiency':>10} {'tokens processed':>17} {'vs shuffled':>12}")
    for r in batching:
        print(
            f"{r['method']:<52} {r['efficiency']:>10.3f} {r['tokens_processed']:>17,.0f} "
            f"{r['tokens_processed'] / batching[0]['tokens_processed']:>11.2f}x"
        )
    print(f"\n(c) build_prompt_dataset end to end, {args.rows:,} validated records")
    print(f"{'processes':<52} {'seconds':>8} {'examples/s':>11} {'vs 1 proc':>9}")
    for r in builds:
        print(f"{r['method']:<52} {r['seconds']:>8.1f} {r['examples_per_s']:>11,.0f} {r['vs_one']:>8.2f}x")
    print(f"kept per split: {builds[0]['counts']}; dropped by reason: {builds[0]['dropped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
