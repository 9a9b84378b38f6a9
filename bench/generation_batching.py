"""Generation speed: batched against one example at a time, on CPU.

Side by side in one run, in one process, on the same tiny-llama base and the same prompts
(``--examples`` sample tickets, seed 42, rendered with ``triage_v1`` as the prompt dataset
renders them): greedy generation of ``--max-new-tokens`` tokens per prompt with
``--batch-size`` prompts per ``model.generate`` call (left padding, KV cache) against one
prompt per call. Each timed pass covers all prompts: tokenising, generating and decoding, as
``tuneops.models.generation.generate`` does. Each mode runs ``--repeats`` times, alternating which
goes first; the medians are compared. torch keeps its default thread count.

Why not time ``tuneops.models.generation.generate`` itself: it stops a sequence at EOS, and a batch
runs until its last member stops, so one-at-a-time would generate fewer tokens than batched
and the ratio would depend on where the model happens to emit EOS. The timed passes call
``model.generate`` with exactly its default (greedy) settings plus
``min_new_tokens = max_new_tokens``, so both modes generate the same number of tokens for
every prompt (checked). Before the clock starts, each mode runs ``tuneops.models.generation.generate``
once (the warm-up); every library output must be a prefix of the forced output for the same
prompt, which shows the settings are the library's, and the count that stopped early at EOS
is printed.

Prints examples/s and new tokens/s of each mode (median and range), the ratio batched / one
at a time, and how many of the greedy outputs are identical between the two modes (left
padding changes matrix shapes, so floating-point ties can break differently; reported, not
asserted), and the 1-minute load average before and after the timed passes.

Everything lives in a temporary ``TUNEOPS_HOME``; the base model is built and pretrained
there first (about a minute on a quiet machine, not timed). No hub access.

    .venv/bin/python bench/generation_batching.py [--examples 64] [--batch-size 16] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def rendered_prompts(n: int, seed: int) -> list[str]:
    """The prompts of ``n`` sample tickets rendered with the triage_v1 template."""
    from tuneops.config import load_template
    from tuneops.core.sample_data import generate_tickets
    from tuneops.core.templates import render_prompt

    template = load_template("triage_v1")
    return [
        render_prompt(template, {"id": t["ticket_id"], "input": t["body"], "subject": t["subject"]})
        for t in generate_tickets(n, seed)
    ]


def generate_exactly(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, add_special_tokens: bool
) -> tuple[list[list[int]], list[str]]:
    """``tuneops.models.generation.generate`` with its default greedy ``Decoding()``, EOS held back until
    ``max_new_tokens`` tokens exist.

    Returns the new token ids and the decoded completions, one per prompt.
    """
    import torch

    ids: list[list[int]] = []
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        )
        with torch.no_grad():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                use_cache=True,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        ids += new_tokens.tolist()
        texts += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return ids, texts


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first token where ``a`` and ``b`` differ; None when they are equal."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=64, help="prompts to generate for, in each mode")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per call in the batched mode")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each mode")
    parser.add_argument("--seed", type=int, default=42, help="sample-ticket seed")
    args = parser.parse_args()
    for flag in ("examples", "batch_size", "max_new_tokens", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            {
                "TUNEOPS_HOME": str(Path(tmp) / "home"),
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        os.environ.pop("TUNEOPS_ARTIFACT_ROOT", None)
        import torch

        from tuneops.config import load_template
        from tuneops.core.settings import load_settings
        from tuneops.core.store import ArtifactStore
        from tuneops.core.templates import adds_special_tokens
        from tuneops.models.base_model import resolve_base_model
        from tuneops.models.generation import generate, load_model

        print("building the tiny-llama base model (not timed) ...", file=sys.stderr)
        base_path = resolve_base_model("builtin:tiny-llama", ArtifactStore.from_settings(load_settings()))
        model, tokenizer = load_model(base_path)

        special = adds_special_tokens(load_template("triage_v1"))
        prompts = rendered_prompts(args.examples, args.seed)
        prompt_lengths = [len(tokenizer(p, add_special_tokens=special)["input_ids"]) for p in prompts]
        modes = {f"batched ({args.batch_size} per call)": args.batch_size, "one at a time": 1}

        # Warm-up, not timed: the library function itself, once per mode.
        library = {
            name: generate(model, tokenizer, prompts, args.max_new_tokens, size, special)
            for name, size in modes.items()
        }

        seconds: dict[str, list[float]] = {name: [] for name in modes}
        load_before = os.getloadavg()[0]
        outputs: dict[str, tuple[list[list[int]], list[str]]] = {}
        for i in range(args.repeats):
            # Alternate which mode goes first, so a change in other load on the machine does not
            # always fall on the same one.
            for name in list(modes) if i % 2 == 0 else list(modes)[::-1]:
                started = time.perf_counter()
                outputs[name] = generate_exactly(
                    model, tokenizer, prompts, args.max_new_tokens, modes[name], special
                )
                seconds[name].append(time.perf_counter() - started)
                print(f"pass {i + 1}/{args.repeats} {name}: {seconds[name][-1]:.2f} s", file=sys.stderr)

        load_after = os.getloadavg()[0]
        for name, (ids, texts) in outputs.items():
            counts = {len(t) - t.count(tokenizer.pad_token_id) for t in ids}
            if counts != {args.max_new_tokens}:
                raise SystemExit(
                    f"{name} generated {sorted(counts)} tokens per prompt, not {args.max_new_tokens}; "
                    "the comparison would be unfair"
                )
            if not all(forced.startswith(lib) for forced, lib in zip(texts, library[name], strict=True)):
                raise SystemExit(
                    f"{name}: tuneops.models.generation.generate gave an output that is not a prefix of the forced "
                    "output; the bench no longer generates with the library's settings"
                )

    batched, single = list(modes)
    table = []
    for name in modes:
        median = statistics.median(seconds[name])
        table.append(
            {
                "mode": name,
                "seconds": median,
                "range": (min(seconds[name]), max(seconds[name])),
                "examples_per_s": args.examples / median,
                "tokens_per_s": args.examples * args.max_new_tokens / median,
                "library_stopped_early": sum(
                    lib != forced for lib, forced in zip(library[name], outputs[name][1], strict=True)
                ),
            }
        )
    ratio = table[0]["examples_per_s"] / table[1]["examples_per_s"]
    differences = [
        first_difference(a, b) for a, b in zip(outputs[batched][0], outputs[single][0], strict=True)
    ]
    identical = sum(d is None for d in differences)
    diverged = sorted(d for d in differences if d is not None)
    padded = sum(
        max(prompt_lengths[s : s + args.batch_size]) * len(prompt_lengths[s : s + args.batch_size])
        for s in range(0, len(prompt_lengths), args.batch_size)
    )

    print(
        f"{args.examples} prompts (triage_v1, seed {args.seed}): {min(prompt_lengths)}-{max(prompt_lengths)} tokens, "
        f"mean {statistics.mean(prompt_lengths):.1f}; batched prompt padding efficiency "
        f"{sum(prompt_lengths) / padded:.3f}. {args.max_new_tokens} new tokens per prompt in both modes, "
        f"greedy, KV cache; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.repeats} timed passes per mode after one warm-up; 1-minute load average "
        f"{load_before:.2f} before, {load_after:.2f} after (other work on the machine)."
    )
    print(
        f"{'mode':<24} {'seconds (median)':>16} {'range':>13} {'examples/s':>11} {'new tokens/s':>13} "
        f"{'library stopped at EOS':>23}"
    )
    for r in table:
        span = f"{r['range'][0]:.2f}-{r['range'][1]:.2f}"
        stopped = f"{r['library_stopped_early']}/{args.examples}"
        print(
            f"{r['mode']:<24} {r['seconds']:>16.2f} {span:>13} {r['examples_per_s']:>11.1f} "
            f"{r['tokens_per_s']:>13.0f} {stopped:>23}"
        )
    print(f"examples/s ratio batched / one at a time: {ratio:.2f}x (target: at least 5x)")
    print(
        f"identical greedy outputs between the modes: {identical}/{args.examples} ({identical / args.examples:.0%})"
        + (f"; the others first differ at new token {diverged[0]}-{diverged[-1]}" if diverged else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
