"""Training speed: our trainer against a plain Hugging Face ``Trainer`` + PEFT LoRA, on CPU.

Side by side in one run, each in a fresh child process so peak RSS (VmHWM) is its own, on
the same tiny-llama base, the same tokenised training examples and the same seeded LoRA model
(r, alpha, dropout, target_modules from the recipe): the baseline builds them with our trainer's
own set-up seams, ``LoraFinetune.setup_data()`` and ``setup_model()`` (``tuneops.training.train``;
prompt masked with -100); the same batch size, optimizer steps, learning rate and schedule
(AdamW, cosine with the recipe's warmup, grad clip 1.0), fp32 on the CPU, the same
``TUNEOPS_TORCH_THREADS`` torch threads:
  (a) baseline: ``transformers.Trainer`` on the PEFT model with ``DataCollatorForSeq2Seq``
      (shuffled batches padded to their longest member, labels -100 on padding; with
      ``--baseline-sampling group_by_length``, Trainer's own ``LengthGroupedSampler``),
      ``report_to=[]``, no eval, no saving, ``dataloader_num_workers=0``. Only
      ``trainer.train()`` is timed (a callback also reports the loop alone, without Trainer's
      setup); a forward pre-hook counts the tokens of the batches it ran.
  (b) ours: ``python -m tuneops.training.train --recipe R --dataset URI --output URI`` (length-grouped
      batches), with ``train.checkpoint_every: null`` and a large ``log_every``, so neither
      checkpoint I/O nor per-step logging is in the time. The child calls the same
      ``tuneops.training.train.main`` with the same arguments, wrapped only to count the tokens of the
      training batches it collated and to print its peak RSS; its tokens/s and seconds are
      the ones in its own JSON summary (the training loop only).
Prints for each: tokens/s (non-pad tokens per second of the training loop), training-loop
seconds, child process wall seconds, padding efficiency (non-pad tokens / tokens processed,
over the batches actually run), peak RSS, the 1-minute load average around each child; and
the tokens/s ratio ours / baseline. ``--repeats N`` runs each side N times, alternating which
goes first, and adds the medians: on a shared 2-core machine other work skews a single pair.

Data: ``--tickets`` sample tickets (seed 7). The generator's tickets are nearly all the same
length, which leaves no padding to save, so before validation ``--share`` of the bodies
(seeded) get whole neutral sentences appended, up to a random budget of 1-60 tokens
(tiny-llama tokenizer); the longest body stays well inside the dataset config's bounds
(4,000 chars, 160 tokens). The recipe is ``tests/data/recipe-fast.yaml`` with ``max_steps = --steps``, ``batch_size`` 16 and
``max_seq_len`` 256 (up from 192, so no lengthened example is dropped).

Everything lives in a temporary ``TUNEOPS_HOME`` (artifacts, SQLite MLflow); the base model is
built and pretrained there first (one to two minutes, not timed). No hub access.

There is no ``--device cuda`` variant: the GPU benchmark (a ~0.5-1B Llama built from a config
at sequence length 2048, with MFU = (6 * N_trainable * tokens + 4 * N_frozen * tokens) FLOPs
/ elapsed seconds / the GPU's peak FLOP/s) needs a GPU, and this machine has none, so it is
not run here and no GPU figure is estimated.

    .venv/bin/python bench/train_throughput.py [--steps 60] [--tickets 1000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FAST_RECIPE = REPO / "tests" / "data" / "recipe-fast.yaml"
BATCH_SIZE = 16
MAX_SEQ_LEN = 256
EXTRA_TOKENS = (1, 60)
# Sentences with no category or priority cue, so the triage label still follows from the ticket.
FILLER = [
    "I have attached a screenshot of what I see.",
    "We use it in three offices.",
    "My colleague sees the same thing on her laptop.",
    "We have been customers for several years.",
    "I looked in the help centre first but found nothing.",
    "It started on Monday morning.",
    "Our account is on the business plan.",
    "I am writing from my phone.",
    "Thank you for reading this.",
    "Let me know if you need more details from our side.",
]

# Peak RSS of this process: VmHWM is reset at exec; getrusage's maxrss is not, and would
# report the forking parent's size.
HWM = "[int(line.split()[1]) * 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')][0]"

# Our trainer's CLI entry point, with a counter on the batches it collates for training
# (the final validation pass runs under no_grad and is not counted).
OURS = f"""
import json, sys
import torch
import tuneops.training.train as t
seen = {{"real": 0, "processed": 0}}
plain = t.collate
def counted(batch, pad_id):
    ids, labels, mask = plain(batch, pad_id)
    if torch.is_grad_enabled():
        seen["real"] += int(mask.sum())
        seen["processed"] += mask.numel()
    return ids, labels, mask
t.collate = counted
rc = t.main(sys.argv[1:])
print(json.dumps({{**seen, "threads": torch.get_num_threads(), "peak_rss": {HWM}}}))
sys.exit(rc)
"""


def lengthen_bodies(batch: Path, tokenizer_path: str, share: float, seed: int) -> dict:
    """Append up to 60 tokens of filler sentences to ``share`` of the ticket bodies in ``batch`` (in place).

    Returns the body token lengths before and after (min/mean/max).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    cost = {s: len(tok(" " + s, add_special_tokens=False)["input_ids"]) for s in FILLER}
    rng = random.Random(seed)
    records = [json.loads(line) for line in batch.read_text().splitlines()]
    before = [len(tok(r["body"], add_special_tokens=False)["input_ids"]) for r in records]
    for record in records:
        if rng.random() >= share:
            continue
        budget = rng.randint(*EXTRA_TOKENS)
        extra = []
        for sentence in rng.sample(FILLER, len(FILLER)):
            if cost[sentence] <= budget:
                extra.append(sentence)
                budget -= cost[sentence]
        record["body"] = " ".join([record["body"], *extra])
    after = [len(tok(r["body"], add_special_tokens=False)["input_ids"]) for r in records]
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))

    def stats(xs: list[int]) -> dict:
        return {"min": min(xs), "mean": round(sum(xs) / len(xs), 1), "max": max(xs)}

    return {"body_tokens_before": stats(before), "body_tokens_after": stats(after)}


def baseline_child(spec_path: str) -> None:
    """Train with ``transformers.Trainer`` + PEFT as the spec says; print one JSON line of results."""
    import torch

    torch.set_num_threads(int(os.environ["TUNEOPS_TORCH_THREADS"]))
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from tuneops.config import load_recipe
    from tuneops.core.settings import load_settings
    from tuneops.training.train import LoraFinetune

    spec = json.loads(Path(spec_path).read_text())
    recipe = load_recipe(spec["recipe"])
    cfg = recipe.train
    # Our trainer's own set-up: the same tokenizer, tokenised examples and seeded LoRA model.
    job = LoraFinetune(recipe, spec["dataset"], spec["output_dir"], None, load_settings())
    tokenizer, examples, _ = job.setup_data()
    tokenizer.padding_side = "right"
    model = job.setup_model()
    seen = {"real": 0, "processed": 0}

    def count_tokens(module, args, kwargs):
        mask = kwargs["attention_mask"]
        seen["real"] += int(mask.sum())
        seen["processed"] += mask.numel()

    model.register_forward_pre_hook(count_tokens, with_kwargs=True)
    loop = {}

    class LoopClock(TrainerCallback):
        """Marks the loop itself, after Trainer's setup (dataloader, optimizer), like our trainer's clock."""

        def on_train_begin(self, args, state, control, **kwargs):
            loop["started"] = time.monotonic()

        def on_train_end(self, args, state, control, **kwargs):
            loop["ended"] = time.monotonic()

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=spec["output_dir"],
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            max_steps=cfg.max_steps,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            lr_scheduler_type="cosine",
            warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
            max_grad_norm=1.0,
            optim="adamw_torch",  # torch.optim.AdamW, as ours
            train_sampling_strategy=spec["sampling"],
            seed=cfg.seed,
            report_to=[],
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=True,
            label_names=["labels"],
        ),
        train_dataset=Dataset.from_list(examples),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
        callbacks=[LoopClock()],
    )
    started = time.monotonic()
    result = trainer.train()
    elapsed = time.monotonic() - started
    peak = [int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    print(
        json.dumps(
            {
                "train_examples": len(examples),
                "dropped_too_long": job.dropped,
                "steps": result.global_step,
                "train_seconds": elapsed,
                "loop_seconds": loop["ended"] - loop["started"],
                "mean_train_loss": round(result.training_loss, 4),
                "real": seen["real"],
                "processed": seen["processed"],
                "threads": torch.get_num_threads(),
                "peak_rss": peak,
            }
        )
    )


def run_child(cmd: list[str], env: dict, lines: int) -> tuple[list[dict], dict]:
    """Run ``cmd`` in a fresh process; returns its last ``lines`` stdout lines as JSON, and its
    wall seconds with the 1-minute load average before and after (other work on the machine)."""
    load_before, started = os.getloadavg()[0], time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1:3]} failed with exit code {proc.returncode}")
    process = {
        "process_wall_seconds": round(elapsed, 1),
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-lines:]], process


def run_baseline(spec_path: Path, env: dict) -> dict:
    (base,), process = run_child([sys.executable, __file__, "--baseline-child", str(spec_path)], env, 1)
    return {
        "tokens_per_s": round(base["real"] / base["train_seconds"], 1),
        "train_seconds": round(base["train_seconds"], 1),
        "loop_seconds_without_trainer_setup": round(base["loop_seconds"], 1),
        **process,
        "padding_efficiency": round(base["real"] / base["processed"], 4),
        "non_pad_tokens": base["real"],
        "tokens_processed": base["processed"],
        "peak_rss_mib": round(base["peak_rss"] / 2**20),
        "train_examples": base["train_examples"],
        "steps": base["steps"],
        "torch_threads": base["threads"],
        "mean_train_loss": base["mean_train_loss"],
    }


def run_ours(args: list[str], env: dict) -> dict:
    (summary, counts), process = run_child([sys.executable, "-c", OURS, *args], env, 2)
    if not counts["processed"]:
        raise SystemExit(
            "tuneops.training.train no longer collates through tuneops.training.train.collate; update OURS here"
        )
    return {
        "tokens_per_s": summary["tokens_per_s"],
        "train_seconds": summary["train_seconds"],
        **process,
        "padding_efficiency": round(counts["real"] / counts["processed"], 4),
        "padding_efficiency_epoch0_logged": summary["padding_efficiency"],
        "non_pad_tokens": counts["real"],
        "tokens_processed": counts["processed"],
        "peak_rss_mib": round(counts["peak_rss"] / 2**20),
        "train_examples": summary["train_examples"],
        "steps": summary["steps"],
        "torch_threads": counts["threads"],
        "final_train_loss": round(summary["final_train_loss"], 4),
    }


def prepare(tmp: Path, tickets: int, share: float) -> tuple[str, dict]:
    """Build the base model and the prompt dataset in the temporary home; returns (dataset URI, length stats)."""
    from tuneops.config import load_dataset_config, load_template
    from tuneops.core.sample_data import write_sample_batch
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.data.prompts import build_prompt_dataset
    from tuneops.data.validation import validate_batch
    from tuneops.models.base_model import resolve_base_model, resolve_tokenizer

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    resolve_base_model("builtin:tiny-llama", store)  # built here, so neither side's time includes it
    config = load_dataset_config("support_tickets").model_copy(update={"golden": None})
    batch = write_sample_batch(tmp / "batch.jsonl", tickets, seed=7)
    lengths = lengthen_bodies(batch, resolve_tokenizer(config.tokenizer, store), share, seed=7)
    validated = validate_batch(str(batch), config, store, settings.cache_dir, [str(tmp)])
    built = build_prompt_dataset(
        [validated["key"]], config, load_template(config.template), store, settings.cache_dir
    )
    return built["uri"], {**lengths, "dataset_counts": built["counts"]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps on each side")
    parser.add_argument("--tickets", type=int, default=1000, help="sample tickets to generate")
    parser.add_argument("--share", type=float, default=0.6, help="share of ticket bodies that get extra text")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on each side")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each side, alternating which goes first"
    )
    parser.add_argument(
        "--baseline-sampling",
        choices=["random", "group_by_length"],
        default="random",
        help="the baseline Trainer's train_sampling_strategy (its own length grouping is opt-in)",
    )
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(args.baseline_child)
        return 0

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {
            **os.environ,
            "TUNEOPS_HOME": str(tmp / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "GX_ANALYTICS_ENABLED": "False",
            "TUNEOPS_TORCH_THREADS": str(args.threads),
            "CUDA_VISIBLE_DEVICES": "",  # a CPU benchmark on both sides, GPU or not
        }
        for name in ("TUNEOPS_ARTIFACT_ROOT", "MLFLOW_REGISTRY_URI"):
            env.pop(name, None)
        os.environ.update(env)
        dataset_uri, data = prepare(tmp, args.tickets, args.share)  # not timed

        spec = yaml.safe_load(FAST_RECIPE.read_text())
        spec["train"].update(
            {
                "max_steps": args.steps,
                "batch_size": BATCH_SIZE,
                "max_seq_len": MAX_SEQ_LEN,
                "checkpoint_every": None,
                "log_every": 1000,
            }
        )
        recipe = tmp / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(spec))
        baseline_spec = tmp / "baseline.json"
        baseline_spec.write_text(
            json.dumps(
                {
                    "recipe": str(recipe),
                    "dataset": dataset_uri,
                    "output_dir": str(tmp / "hf-trainer"),
                    "sampling": args.baseline_sampling,
                }
            )
        )

        runs = {"baseline_hf_trainer_peft": [], "ours_tuneops_train": []}
        for i in range(args.repeats):
            # Alternate which side goes first, so a change in other load on the machine
            # does not always fall on the same side.
            ours_args = [
                "--recipe",
                str(recipe),
                "--dataset",
                dataset_uri,
                "--output",
                str(tmp / f"adapter-{i}"),
            ]
            pair = [
                ("baseline_hf_trainer_peft", lambda: run_baseline(baseline_spec, env)),
                ("ours_tuneops_train", lambda a=ours_args: run_ours(a, env)),
            ]
            for name, run in pair if i % 2 == 0 else pair[::-1]:
                runs[name].append(run())
                print(
                    f"run {i + 1}/{args.repeats} {name}: {runs[name][-1]['tokens_per_s']} tokens/s",
                    file=sys.stderr,
                )

    medians = {
        name: round(statistics.median(r["tokens_per_s"] for r in results), 1)
        for name, results in runs.items()
    }
    report = {
        "steps": args.steps,
        "batch_size": BATCH_SIZE,
        "max_seq_len": MAX_SEQ_LEN,
        "baseline_sampling": args.baseline_sampling,
        "data": data,
        "runs": runs,
        "median_tokens_per_s": medians,
        "tokens_per_s_ratio_ours_vs_baseline_per_pair": [
            round(o["tokens_per_s"] / b["tokens_per_s"], 2)
            for b, o in zip(runs["baseline_hf_trainer_peft"], runs["ours_tuneops_train"], strict=True)
        ],
        "tokens_per_s_ratio_ours_vs_baseline_of_medians": round(
            medians["ours_tuneops_train"] / medians["baseline_hf_trainer_peft"], 2
        ),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
