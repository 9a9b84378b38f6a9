"""The fine-tuning job: ``python -m tuneops.training.train --recipe R --dataset URI --output URI [--run-id ID]``.

The same command runs as a local subprocess and inside the trainer image on a Kubernetes
GPU pod. It trains a LoRA adapter with the loss masked to the response tokens, publishes
adapter + tokenizer + resolved recipe + ``summary.json`` atomically to ``--output``, logs to
the MLflow run ``--run-id``, and, inside a pod, writes the summary to the XCom sidecar file.
If ``--output`` already holds a complete result (a retried pod), it returns that instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from itertools import chain, count
from pathlib import Path

import yaml

from tuneops.config import Recipe, load_recipe
from tuneops.core.hashing import hash_dir, hash_json
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.training.batching import length_grouped_batches, padding_efficiency, random_batches

log = logging.getLogger(__name__)
XCOM_RETURN = Path("/airflow/xcom/return.json")


class TrainingError(RuntimeError):
    """Training cannot start or did not converge to a publishable adapter."""


def recipe_hash(recipe: Recipe) -> str:
    """Hash of what decides the trained weights (base model, LoRA, training); eval, gate,
    registry and compute settings are left out, so changing a gate threshold does not retrain."""
    return hash_json(recipe.model_dump(include={"base_model", "trust_remote_code", "lora", "train"}))[:12]


def store_for(uri: str, settings: Settings) -> tuple[ArtifactStore, str]:
    """An ArtifactStore rooted at the parent of ``uri`` and the key of ``uri`` in it."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not name or not parent:
        raise ValueError(f"{uri!r} is not a folder URI; pass a path like /data/out or s3://bucket/prefix/out")
    return ArtifactStore(parent, cache_dir=settings.cache_dir), name


def tokenize_split(rows, tokenizer, max_len: int, add_special_tokens: bool = True) -> tuple[list[dict], int]:
    """Prompt+response token ids with labels masked (-100) over the prompt; drops over-long rows.

    ``add_special_tokens`` is the dataset manifest's: chat-formatted prompts already hold theirs.
    """
    from tuneops.data.prompts import encode_example

    examples, dropped = [], 0
    for row in rows:
        prompt, response = encode_example(tokenizer, row["prompt"], row["response"], add_special_tokens)
        ids = prompt + response
        if len(ids) > max_len:
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": [-100] * len(prompt) + response})
    return examples, dropped


def collate(batch: list[dict], pad_id: int):
    import torch

    width = max(len(ex["input_ids"]) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ex in enumerate(batch):
        n = len(ex["input_ids"])
        ids[i, :n] = torch.tensor(ex["input_ids"])
        labels[i, :n] = torch.tensor(ex["labels"])
        mask[i, :n] = 1
    return ids, labels, mask


def _eval_loss(model, examples: list[dict], pad_id: int, batch_size: int, autocast) -> float:
    import torch

    if not examples:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            ids, labels, mask = (t.to(device) for t in collate(examples[i : i + batch_size], pad_id))
            n = int((labels[:, 1:] != -100).sum())
            with autocast():
                total += model(input_ids=ids, attention_mask=mask, labels=labels).loss.item() * n
            count += n
    model.train()
    return total / max(count, 1)


def _load_base(recipe: Recipe, base_path: str):
    """The frozen base on the best device: GPU if present (4-bit when the recipe asks), else CPU fp32.

    Returns ``(model, autocast)``: ``autocast()`` is the context each forward runs in (bf16
    mixed precision on GPUs that have it, unless the recipe pins fp32).
    """
    import functools

    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported() and recipe.train.precision != "fp32"
    if recipe.train.precision == "bf16" and not bf16:
        raise TrainingError(
            "train.precision is bf16 but there is no GPU with bf16 here; use precision: auto or fp32"
        )
    kwargs = {"trust_remote_code": recipe.trust_remote_code, "dtype": torch.float32}
    if recipe.lora.quantize_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            bitsandbytes = None
        if not cuda or bitsandbytes is None:
            raise TrainingError(
                "lora.quantize_4bit (QLoRA) needs a CUDA GPU and the bitsandbytes package, and this machine has "
                + ("no GPU" if not cuda else "no bitsandbytes")
                + "; set lora.quantize_4bit: false to train in full precision"
            )
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if bf16 else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    if recipe.lora.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=recipe.train.gradient_checkpointing
        )
    elif cuda:
        model = model.to("cuda")
    if recipe.train.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if bf16:
        return model, functools.partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    return model, contextlib.nullcontext


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def output_lease(output_uri: str, settings: Settings):
    """Hold the lease on ``output_uri`` (``<parent>/locks/train-<name>.lock``) while training for it.

    Two trainers never write one output at once: a second one (a retry racing a trainer that
    outlived its task, or a duplicate launch) waits for the lease and fails with LockTimeout
    if the holder is alive. The lease is short (``TUNEOPS_TRAIN_LEASE_SECONDS``, default 120 s)
    and renewed every quarter of it, so a killed trainer's lapses before its task's retry gives up.
    Yields the Lease (None on non-zero ranks of a torchrun launch, which rank 0 covers).
    """
    from tuneops.core.locks import store_lock

    if not _is_main_rank():
        yield None
        return
    ttl = float(os.environ.get("TUNEOPS_TRAIN_LEASE_SECONDS") or 120)
    out_store, out_key = store_for(output_uri, settings)
    owner = f"trainer pid {os.getpid()} on {os.uname().nodename}"
    with store_lock(
        out_store,
        f"train-{out_key}",
        owner=owner,
        ttl_seconds=ttl,
        wait_seconds=2 * ttl,
        heartbeat_seconds=ttl / 4,
    ) as lease:
        yield lease


def _still_ours(lease) -> None:
    if lease is not None and lease.lost.is_set():
        raise TrainingError(
            f"the lease on this output ({lease.uri}) lapsed and another trainer took it over; "
            "stopping without publishing so the two never write the same output"
        )


def train(
    recipe: Recipe, dataset_uri: str, output_uri: str, run_id: str | None, settings: Settings, lease=None
) -> dict:
    """Train a LoRA adapter and publish it to ``output_uri``; returns the summary dict.

    ``lease`` is the ``output_lease`` held for ``output_uri``: the run stops before writing
    anything once it is lost. A resumed run removes the staging folders a killed run left.
    Raises TrainingError for an empty dataset, a missing base model or a NaN/inf loss
    (with the step number); nothing is published in those cases.
    """
    from tuneops.training import distributed

    out_store, out_key = store_for(output_uri, settings)
    if out_store.exists(out_key):
        summary = json.loads((out_store.fetch_dir(out_key) / "summary.json").read_text())
        log.info("output %s is already complete; returning its summary instead of training again", output_uri)
        return {**summary, "reused": True}
    if lease is not None:  # only the lease holder may clear what earlier writers of this output left
        for leftover in out_store.clean_staging(out_key):
            log.warning("removed %s, left by a trainer that was killed mid-write", leftover)

    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

    from tuneops.core.tracking import configure_mlflow, flatten
    from tuneops.data.prompts import load_prompt_dataset
    from tuneops.models.base_model import resolve_base_model
    from tuneops.training.checkpoints import (
        latest_complete,
        list_checkpoints,
        load_checkpoint,
        save_checkpoint,
    )

    cfg = recipe.train
    world = distributed.init()
    tracker = _MainOnlyMlflow(world.main)
    data_store, data_key = store_for(dataset_uri, settings)
    if not data_store.exists(data_key):
        raise TrainingError(
            f"dataset {dataset_uri} is not a published prompt dataset; run llmops_build_prompt_dataset first"
        )
    dataset_dir = data_store.fetch_dir(data_key)
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    splits = load_prompt_dataset(dataset_dir)

    base_path = resolve_base_model(recipe.base_model, ArtifactStore.from_settings(settings))
    tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=recipe.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows = splits["train"]
    if cfg.max_train_examples:
        train_rows = train_rows.select(range(min(cfg.max_train_examples, len(train_rows))))
    special = manifest.get("add_special_tokens", True)
    train_ex, dropped = tokenize_split(train_rows, tokenizer, cfg.max_seq_len, special)
    val_ex, _ = tokenize_split(splits["validation"], tokenizer, cfg.max_seq_len, special)
    if not train_ex:
        raise TrainingError(
            f"dataset {dataset_uri} has no training rows within max_seq_len={cfg.max_seq_len} "
            f"({dropped} dropped as too long); raise train.max_seq_len or check the dataset"
        )

    model, autocast = _load_base(recipe, base_path)
    device = next(model.parameters()).device
    # Seeded here, after everything above: building the base model in this process (first
    # run on a fresh store) draws from the RNG too, and must not change the adapter's init.
    torch.manual_seed(cfg.seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=recipe.lora.target_modules,
            task_type="CAUSAL_LM",
        ),
    )
    lengths = [len(ex["input_ids"]) for ex in train_ex]

    def epoch_batches(epoch: int) -> list[list[int]]:
        if cfg.group_by_length:
            return length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed + epoch)
        return random_batches(len(lengths), cfg.batch_size, seed=cfg.seed + epoch)

    # Epoch 0 is drawn up front to log how much of it is padding; each epoch reshuffles.
    first_epoch = epoch_batches(0)
    efficiency = round(padding_efficiency(lengths, first_epoch), 4)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
    )

    done, tokens = 0, 0
    # Early stopping's memory: best validation loss so far and evaluations since it improved.
    best = {"eval_loss": math.inf, "step": 0, "stale": 0}
    checkpoint = latest_complete(out_store, out_key)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        done, tokens, best = state["step"], state["tokens"], state.get("best", best)
        log.info("resuming from checkpoint %s at step %d of %d", checkpoint, done, cfg.max_steps)
    # The batch order is a function of (seed, epoch), so a resumed run picks up at the very
    # micro-batch where the checkpointed one stopped. Every process walks the same stream;
    # an optimizer step takes grad_accum x world micro-batches, rank r every world-th one.
    epoch, position = divmod(done * cfg.grad_accum * world.size, len(first_epoch))
    batches = chain(
        epoch_batches(epoch)[position:], chain.from_iterable(epoch_batches(e) for e in count(epoch + 1))
    )
    # DDP after the checkpoint is loaded; wrapping broadcasts rank 0's weights to the others.
    trained = model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    run = contextlib.nullcontext()
    if world.main:
        configure_mlflow(settings)
        # System metrics (CPU, memory, disk, network; GPU where pynvml is installed) every 10 s.
        name = None if run_id else f"train-{recipe_hash(recipe)}"
        run = mlflow.start_run(run_id=run_id, run_name=name, log_system_metrics=True)
    with run:
        tracker.log_params({f"recipe.{k}": v for k, v in flatten(recipe.model_dump()).items()})
        tracker.log_params(
            {
                "dataset.version": manifest["version"],
                "dataset.train_rows": len(train_ex),
                "lora.trainable_params": trainable,
                "world_size": world.size,
            }
        )
        tracker.log_metric("padding_efficiency", efficiency)
        model.train()
        started, tokens_at_start, loss_value = time.monotonic(), tokens, float("nan")
        stopped_early_at = None
        step = done
        try:
            for step in range(done + 1, cfg.max_steps + 1):
                for _ in range(cfg.grad_accum):
                    mine = [next(batches) for _ in range(world.size)][world.rank]
                    batch = [train_ex[i] for i in mine]
                    ids, labels, mask = (t.to(device) for t in collate(batch, tokenizer.pad_token_id))
                    with autocast():
                        loss = (
                            trained(input_ids=ids, attention_mask=mask, labels=labels).loss / cfg.grad_accum
                        )
                    loss.backward()
                    tokens += int(mask.sum())
                loss_value = distributed.mean(world, loss.item() * cfg.grad_accum)
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"loss became {loss_value} at step {step}; lower train.learning_rate. No adapter was published."
                    )
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if cfg.eval_every and step % cfg.eval_every == 0:
                    # Every rank evaluates the same weights on the same rows: same decision everywhere.
                    current = _eval_loss(model, val_ex, tokenizer.pad_token_id, cfg.batch_size, autocast)
                    tracker.log_metric("eval_loss", current, step=step)
                    if current < best["eval_loss"] - cfg.early_stopping_min_delta:
                        best = {"eval_loss": current, "step": step, "stale": 0}
                    else:
                        best["stale"] += 1
                    if cfg.early_stopping_patience and best["stale"] >= cfg.early_stopping_patience:
                        log.info(
                            "early stop at step %d: validation loss has not improved on %.4f (step %d) for %d evaluations",
                            step,
                            best["eval_loss"],
                            best["step"],
                            best["stale"],
                        )
                        stopped_early_at = step
                        break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                    if world.main:  # the other ranks hold the same weights and optimizer state
                        _still_ours(lease)
                        state = {"tokens": tokens, "loss": loss_value, "best": best}
                        save_checkpoint(
                            out_store, out_key, step, model, optimizer, scheduler, state, cfg.keep_checkpoints
                        )
                    distributed.barrier(world)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    rate = distributed.total(world, tokens - tokens_at_start) / (time.monotonic() - started)
                    lr = scheduler.get_last_lr()[0]
                    log.info(
                        "step %d/%d loss %.4f lr %.2e tokens/s %.0f",
                        step,
                        cfg.max_steps,
                        loss_value,
                        lr,
                        rate,
                    )
                    metrics = {"train_loss": loss_value, "lr": lr, "tokens_per_s": rate}
                    metrics["peak_memory_gib"] = _peak_memory_gib(device)
                    tracker.log_metrics(metrics, step=step)
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of GPU memory at step {step} with train.batch_size={cfg.batch_size} and "
                f"train.max_seq_len={cfg.max_seq_len}: lower batch_size (raise grad_accum to keep the effective "
                "batch), lower max_seq_len, or set train.gradient_checkpointing: true. No adapter was published."
            ) from exc
        elapsed = time.monotonic() - started
        all_tokens = distributed.total(world, tokens - tokens_at_start)
        eval_loss = _eval_loss(model, val_ex, tokenizer.pad_token_id, cfg.batch_size, autocast)
        tracker.log_metrics({"eval_loss": eval_loss, "train_seconds": elapsed}, step=step)
        summary = {
            "output_uri": output_uri,
            "base_model": recipe.base_model,
            "base_model_path": base_path,
            "dataset_uri": dataset_uri,
            "dataset_version": manifest["version"],
            "recipe_hash": recipe_hash(recipe),
            "mlflow_run_id": mlflow.active_run().info.run_id if world.main else None,
            "steps": step,
            "stopped_early_at": stopped_early_at,
            "device": device.type,
            "world_size": world.size,
            "final_train_loss": loss_value,
            "eval_loss": eval_loss,
            "train_examples": len(train_ex),
            "dropped_too_long": dropped,
            "padding_efficiency": efficiency,
            "tokens_per_s": round(all_tokens / elapsed, 1),
            "resumed_from_step": done,
            "train_seconds": round(elapsed, 1),
            "trainable_params": trainable,
            "peak_memory_gib": round(_peak_memory_gib(device), 3),
        }
        if world.main:
            _still_ours(lease)
            _publish(model, tokenizer, recipe, summary, out_store, out_key)
    distributed.barrier(world)
    distributed.finish(world)
    if not world.main:
        return {**summary, "rank": world.rank, "reused": False}
    for key in list_checkpoints(out_store, out_key):  # the output is complete: nothing left to resume
        out_store.remove_dir(key)
    log.info("published adapter to %s (eval loss %.4f)", output_uri, eval_loss)
    return {**summary, "reused": False}


def _publish(model, tokenizer, recipe: Recipe, summary: dict, store: ArtifactStore, key: str) -> None:
    """Adapter (safetensors) + tokenizer + resolved recipe + summary.json, published atomically; fills in the adapter hash."""
    with store.publishing(key) as out:
        model.save_pretrained(out / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(out / "adapter")
        (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=True))
        summary["adapter_sha256"] = hash_dir(out / "adapter")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


def _peak_memory_gib(device) -> float:
    """Peak memory so far: GPU memory allocated on a GPU, this process's peak RSS (VmHWM) on CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    with open("/proc/self/status") as status:
        kib = next((int(line.split()[1]) for line in status if line.startswith("VmHWM")), 0)
    return kib / 2**20


class _MainOnlyMlflow:
    """``mlflow`` for rank 0; for the other ranks of a distributed run, calls that do nothing."""

    def __init__(self, main: bool):
        self.main = main

    def __getattr__(self, name: str):
        import mlflow

        return getattr(mlflow, name) if self.main else (lambda *args, **kwargs: None)


def write_xcom_sidecar(summary: dict, path: Path = XCOM_RETURN) -> None:
    """Inside a KubernetesPodOperator pod, hand the summary to Airflow through the XCom sidecar file."""
    if path.parent.is_dir():
        path.write_text(json.dumps(summary))


def parse_sets(items: list[str]) -> dict:
    """``["lora.r=8", "train.learning_rate=1e-3"]`` -> nested recipe overrides (values parsed as YAML)."""
    from tuneops.config import ConfigError, dotted_to_nested

    flat = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lora.r=8")
        flat[key] = yaml.safe_load(value)
    return dotted_to_nested(flat)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tuneops.training.train", description="Fine-tune a LoRA adapter from a recipe."
    )
    p.add_argument("--recipe", required=True, help="recipe name (shipped) or path to a recipe YAML")
    p.add_argument("--dataset", required=True, help="URI of a published prompt dataset")
    p.add_argument("--output", required=True, help="URI to publish the adapter folder to")
    p.add_argument("--run-id", default=None, help="MLflow run id to log into (a new run if omitted)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (dotted, e.g. lora.r=8; the value is YAML); repeatable, wins over the file",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from tuneops.training.process import die_with_parent

    die_with_parent()  # started by a task's TrainerProcess: never outlive that task
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # one line per S3 client otherwise
    for name, value in (("--dataset", args.dataset), ("--output", args.output)):
        if not value.strip():
            print(f"error: {name} is empty; pass a URI", file=sys.stderr)
            return 2
    torch_threads = os.environ.get("TUNEOPS_TORCH_THREADS")
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    from tuneops.config import ConfigError
    from tuneops.core.locks import LockTimeout

    try:
        recipe = load_recipe(args.recipe, parse_sets(args.set))
        settings = load_settings()
        with output_lease(args.output, settings) as lease:
            summary = train(recipe, args.dataset, args.output, args.run_id, settings, lease)
    except (ConfigError, TrainingError, ValueError, LockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "rank" in summary:  # a non-zero rank of a torchrun launch: rank 0 reports
        return 0
    write_xcom_sidecar(summary)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
