"""The fine-tuning job: ``python -m tuneops.training.train --recipe R --dataset URI --output URI [--run-id ID]``.

The same command runs as a local subprocess and inside the trainer image on a Kubernetes
GPU pod. It trains a LoRA adapter with the loss masked to the response tokens, publishes
adapter + tokenizer + resolved recipe + ``summary.json`` atomically to ``--output``, logs to
the MLflow run ``--run-id``, and, inside a pod, writes the summary to the XCom sidecar file.
If ``--output`` already holds a complete result (a retried pod), it returns that instead.
With ``--recipe-hash H`` (the planner's), it refuses a recipe that no longer hashes to ``H``.

The job is ``LoraFinetune``, a recipe class with torchtune's seams (``setup``, ``train``,
``save_checkpoint``, ``cleanup``); ``train()`` here runs it, and a benchmark or a test builds
its parts (``setup_data``, ``setup_model``) without copying them.
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
from functools import cached_property
from itertools import chain, count
from pathlib import Path

import yaml
from pydantic import BaseModel

from tuneops.config import Recipe, load_recipe, recipe_hash
from tuneops.contracts import TrainingSummary
from tuneops.core.hashing import hash_dir
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.training import checkpoints
from tuneops.training.batching import length_grouped_batches, padding_efficiency, random_batches

log = logging.getLogger(__name__)
XCOM_RETURN = Path("/airflow/xcom/return.json")


class TrainingError(RuntimeError):
    """Training cannot start or did not converge to a publishable adapter."""


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


class LoraFinetune:
    """One LoRA fine-tuning run of ``recipe`` on the prompt dataset ``dataset_uri``, published to ``output_uri``.

    The seams, as in torchtune's single-device LoRA recipe: ``setup()`` builds everything the
    loop needs, ``train()`` runs the loop, evaluates and publishes, ``save_checkpoint(step)`` is
    the loop's checkpoint, ``cleanup()`` ends the run. ``setup_data()`` and ``setup_model()``
    are the parts of ``setup`` a benchmark or a test can build on their own; ``existing_summary()``
    tells whether ``output_uri`` is already complete. ``lease`` is the ``output_lease`` held for
    ``output_uri``: the run stops before writing anything once it is lost.
    """

    def __init__(
        self,
        recipe: Recipe,
        dataset_uri: str,
        output_uri: str,
        run_id: str | None,
        settings: Settings,
        lease=None,
    ):
        self.recipe, self.cfg = recipe, recipe.train
        self.dataset_uri, self.output_uri, self.run_id = dataset_uri, output_uri, run_id
        self.settings, self.lease = settings, lease
        self.out_store, self.out_key = store_for(output_uri, settings)
        self.world = None
        self._finished = False

    @cached_property
    def base_path(self) -> str:
        """The local folder of the recipe's base model (built or downloaded on first use)."""
        from tuneops.models.base_model import resolve_base_model

        return resolve_base_model(self.recipe.base_model, ArtifactStore.from_settings(self.settings))

    def existing_summary(self) -> TrainingSummary | None:
        """The published summary (``reused=True``) when ``output_uri`` is already complete, else None."""
        if not self.out_store.exists(self.out_key):
            return None
        published = json.loads((self.out_store.fetch_dir(self.out_key) / "summary.json").read_text())
        return TrainingSummary.model_validate({**published, "reused": True})

    def setup(self) -> None:
        """Process group, tokenised data, base model + LoRA, optimizer and scheduler, and the state
        of the last complete checkpoint when there is one; in that order, so bad data fails before
        any weights load. A resumed run first removes the staging folders a killed run left.
        Raises TrainingError (see ``setup_data``, ``setup_model``)."""
        from tuneops.training import distributed

        if self.lease is not None:  # only the lease holder may clear what earlier writers of this output left
            for leftover in self.out_store.clean_staging(self.out_key):
                log.warning("removed %s, left by a trainer that was killed mid-write", leftover)
        self.world = distributed.init()
        self.tracker = _MainOnlyMlflow(self.world.main)
        self.setup_data()
        self.setup_model()
        self._setup_batches()
        self._setup_optimizer()
        self._resume()
        self._setup_ddp()

    def setup_data(self) -> tuple[object, list[dict], list[dict]]:
        """The base model's tokenizer and the tokenised train and validation examples (prompt masked).

        Also keeps the dataset manifest and how many rows were too long. Raises TrainingError for
        a dataset that is not published or has no training row within ``train.max_seq_len``.
        """
        from transformers import AutoTokenizer

        from tuneops.data.prompts import load_prompt_dataset

        cfg = self.cfg
        data_store, data_key = store_for(self.dataset_uri, self.settings)
        if not data_store.exists(data_key):
            raise TrainingError(
                f"dataset {self.dataset_uri} is not a published prompt dataset; run llmops_build_prompt_dataset first"
            )
        dataset_dir = data_store.fetch_dir(data_key)
        self.manifest = json.loads((dataset_dir / "manifest.json").read_text())
        splits = load_prompt_dataset(dataset_dir)

        tokenizer = AutoTokenizer.from_pretrained(
            self.base_path, trust_remote_code=self.recipe.trust_remote_code
        )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        train_rows = splits["train"]
        if cfg.max_train_examples:
            train_rows = train_rows.select(range(min(cfg.max_train_examples, len(train_rows))))
        special = self.manifest.get("add_special_tokens", True)
        self.train_examples, self.dropped = tokenize_split(train_rows, tokenizer, cfg.max_seq_len, special)
        self.val_examples, _ = tokenize_split(splits["validation"], tokenizer, cfg.max_seq_len, special)
        if not self.train_examples:
            raise TrainingError(
                f"dataset {self.dataset_uri} has no training rows within max_seq_len={cfg.max_seq_len} "
                f"({self.dropped} dropped as too long); raise train.max_seq_len or check the dataset"
            )
        self.tokenizer = tokenizer
        return tokenizer, self.train_examples, self.val_examples

    def setup_model(self):
        """The frozen base on the best device (see ``_load_base``) with new LoRA adapters from the
        recipe, initialised from ``train.seed``; returns the PEFT model. Raises TrainingError for a
        precision or QLoRA setting this machine cannot run, and for LoRA on a tied embedding."""
        import torch
        from peft import LoraConfig, get_peft_model

        from tuneops.models.base_model import tied_embedding_targets

        model, self.autocast = _load_base(self.recipe, self.base_path)
        tied = tied_embedding_targets(model, self.recipe.lora.target_modules)
        if tied:
            raise TrainingError(
                f"lora.target_modules names {tied}, but {self.recipe.base_model} ties its input embedding and lm_head "
                "to one matrix: merging that adapter would change both, so the merged model that evaluation and "
                f"serving use would differ from the trained one; remove {tied} from lora.target_modules"
            )
        self.device = next(model.parameters()).device
        # Seeded here, after the base is loaded: building the base model in this process (first
        # run on a fresh store) draws from the RNG too, and must not change the adapter's init.
        torch.manual_seed(self.cfg.seed)
        lora = self.recipe.lora
        self.model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
        return self.model

    def _setup_batches(self) -> None:
        self.lengths = [len(ex["input_ids"]) for ex in self.train_examples]
        # Epoch 0 is drawn up front to log how much of it is padding; each epoch reshuffles.
        self.first_epoch = self._epoch_batches(0)
        self.padding_efficiency = round(padding_efficiency(self.lengths, self.first_epoch), 4)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        cfg = self.cfg
        if cfg.group_by_length:
            return length_grouped_batches(self.lengths, cfg.batch_size, seed=cfg.seed + epoch)
        return random_batches(len(self.lengths), cfg.batch_size, seed=cfg.seed + epoch)

    def _setup_optimizer(self) -> None:
        import torch
        from transformers import get_cosine_schedule_with_warmup

        cfg = self.cfg
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable_params = sum(p.numel() for p in self.params)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, int(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
        )

    def _resume(self) -> None:
        """Loop state from the last complete checkpoint of this output, or a fresh start."""
        self.resumed_from_step, self.tokens, self.last_loss = 0, 0, math.nan
        # Early stopping's memory: best validation loss so far and evaluations since it improved.
        self.best = {"eval_loss": math.inf, "step": 0, "stale": 0}
        checkpoint = checkpoints.latest_complete(self.out_store, self.out_key)
        if checkpoint is not None:
            state = checkpoints.load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler)
            self.resumed_from_step, self.tokens = state["step"], state["tokens"]
            self.best = state.get("best", self.best)
            log.info(
                "resuming from checkpoint %s at step %d of %d",
                checkpoint,
                self.resumed_from_step,
                self.cfg.max_steps,
            )
        # The batch order is a function of (seed, epoch), so a resumed run picks up at the very
        # micro-batch where the checkpointed one stopped. Every process walks the same stream;
        # an optimizer step takes grad_accum x world micro-batches, rank r every world-th one.
        done = self.resumed_from_step * self.cfg.grad_accum * self.world.size
        epoch, position = divmod(done, len(self.first_epoch))
        self._batches = chain(
            self._epoch_batches(epoch)[position:],
            chain.from_iterable(self._epoch_batches(e) for e in count(epoch + 1)),
        )

    def _setup_ddp(self) -> None:
        # DDP after the checkpoint is loaded; wrapping broadcasts rank 0's weights to the others.
        self._forward = self.model
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._forward = DistributedDataParallel(self.model, device_ids=device_ids)

    def train(self) -> TrainingSummary:
        """Run the loop from the resumed step to ``train.max_steps`` (or an early stop), evaluate,
        and publish on rank 0; returns the summary (``rank`` set on the other ranks).

        Raises TrainingError for a NaN/inf loss (with the step number), out of GPU memory, or a
        lost lease; nothing is published in those cases.
        """
        import torch

        from tuneops.training import distributed

        cfg = self.cfg
        with self._mlflow_run():
            self._log_inputs()
            self.model.train()
            started, tokens_at_start = time.monotonic(), self.tokens
            step, stopped_early_at = self.resumed_from_step, None
            try:
                for step in range(self.resumed_from_step + 1, cfg.max_steps + 1):
                    self._train_step(step)
                    if cfg.eval_every and step % cfg.eval_every == 0 and self._evaluate(step):
                        stopped_early_at = step
                        break
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                        self.save_checkpoint(step)
                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        self._log_progress(step, started, tokens_at_start)
            except torch.OutOfMemoryError as exc:
                raise TrainingError(
                    f"out of GPU memory at step {step} with train.batch_size={cfg.batch_size} and "
                    f"train.max_seq_len={cfg.max_seq_len}: lower batch_size (raise grad_accum to keep the effective "
                    "batch), lower max_seq_len, or set train.gradient_checkpointing: true. No adapter was published."
                ) from exc
            summary = self._summarise(step, stopped_early_at, started, tokens_at_start)
            if self.world.main:
                _still_ours(self.lease)
                _publish(self.model, self.tokenizer, self.recipe, summary, self.out_store, self.out_key)
        distributed.barrier(self.world)
        self._finished = True
        if not self.world.main:
            return TrainingSummary(**summary, rank=self.world.rank)
        log.info("published adapter to %s (eval loss %.4f)", self.output_uri, summary["eval_loss"])
        return TrainingSummary(**summary)

    def _train_step(self, step: int) -> None:
        """One optimizer step over ``grad_accum`` micro-batches of this rank; keeps its (all-rank mean) loss."""
        import torch

        from tuneops.training import distributed

        cfg, world = self.cfg, self.world
        for _ in range(cfg.grad_accum):
            mine = [next(self._batches) for _ in range(world.size)][world.rank]
            batch = [self.train_examples[i] for i in mine]
            ids, labels, mask = (t.to(self.device) for t in collate(batch, self.tokenizer.pad_token_id))
            with self.autocast():
                loss = self._forward(input_ids=ids, attention_mask=mask, labels=labels).loss / cfg.grad_accum
            loss.backward()
            self.tokens += int(mask.sum())
        self.last_loss = distributed.mean(world, loss.item() * cfg.grad_accum)
        if not math.isfinite(self.last_loss):
            raise TrainingError(
                f"loss became {self.last_loss} at step {step}; lower train.learning_rate. No adapter was published."
            )
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _evaluate(self, step: int) -> bool:
        """Log the validation loss after ``step``; True when early stopping's patience has run out."""
        cfg = self.cfg
        # Every rank evaluates the same weights on the same rows: same decision everywhere.
        current = self.validation_loss()
        self.tracker.log_metric("eval_loss", current, step=step)
        if current < self.best["eval_loss"] - cfg.early_stopping_min_delta:
            self.best = {"eval_loss": current, "step": step, "stale": 0}
        else:
            self.best["stale"] += 1
        if cfg.early_stopping_patience and self.best["stale"] >= cfg.early_stopping_patience:
            log.info(
                "early stop at step %d: validation loss has not improved on %.4f (step %d) for %d evaluations",
                step,
                self.best["eval_loss"],
                self.best["step"],
                self.best["stale"],
            )
            return True
        return False

    def save_checkpoint(self, step: int) -> None:
        """Rank 0 publishes the training state after ``step`` (see ``tuneops.training.checkpoints``),
        keeping the newest ``train.keep_checkpoints``; every rank waits for it. Raises TrainingError
        when the lease is lost."""
        from tuneops.training import distributed

        if self.world.main:  # the other ranks hold the same weights and optimizer state
            _still_ours(self.lease)
            state = {"tokens": self.tokens, "loss": self.last_loss, "best": self.best}
            checkpoints.save_checkpoint(
                self.out_store,
                self.out_key,
                step,
                self.model,
                self.optimizer,
                self.scheduler,
                state,
                self.cfg.keep_checkpoints,
            )
        distributed.barrier(self.world)

    def validation_loss(self) -> float:
        """Mean per-token loss of the model on the validation examples (NaN when there are none)."""
        import torch

        if not self.val_examples:
            return float("nan")
        self.model.eval()
        total, tokens = 0.0, 0
        batch_size, pad_id = self.cfg.batch_size, self.tokenizer.pad_token_id
        with torch.no_grad():
            for i in range(0, len(self.val_examples), batch_size):
                batch = self.val_examples[i : i + batch_size]
                ids, labels, mask = (t.to(self.device) for t in collate(batch, pad_id))
                n = int((labels[:, 1:] != -100).sum())
                with self.autocast():
                    total += self.model(input_ids=ids, attention_mask=mask, labels=labels).loss.item() * n
                tokens += n
        self.model.train()
        return total / max(tokens, 1)

    def _mlflow_run(self):
        if not self.world.main:
            return contextlib.nullcontext()
        import mlflow

        from tuneops.core.tracking import configure_mlflow

        configure_mlflow(self.settings)
        # System metrics (CPU, memory, disk, network; GPU where pynvml is installed) every 10 s.
        name = None if self.run_id else f"train-{recipe_hash(self.recipe)}"
        return mlflow.start_run(run_id=self.run_id, run_name=name, log_system_metrics=True)

    def _log_inputs(self) -> None:
        from tuneops.core.tracking import flatten

        self.tracker.log_params({f"recipe.{k}": v for k, v in flatten(self.recipe.model_dump()).items()})
        self.tracker.log_params(
            {
                "dataset.version": self.manifest["version"],
                "dataset.train_rows": len(self.train_examples),
                "lora.trainable_params": self.trainable_params,
                "world_size": self.world.size,
            }
        )
        self.tracker.log_metric("padding_efficiency", self.padding_efficiency)

    def _log_progress(self, step: int, started: float, tokens_at_start: int) -> None:
        from tuneops.training import distributed

        rate = distributed.total(self.world, self.tokens - tokens_at_start) / (time.monotonic() - started)
        lr = self.scheduler.get_last_lr()[0]
        log.info(
            "step %d/%d loss %.4f lr %.2e tokens/s %.0f", step, self.cfg.max_steps, self.last_loss, lr, rate
        )
        metrics = {"train_loss": self.last_loss, "lr": lr, "tokens_per_s": rate}
        metrics["peak_memory_gib"] = _peak_memory_gib(self.device)
        self.tracker.log_metrics(metrics, step=step)

    def _summarise(
        self, step: int, stopped_early_at: int | None, started: float, tokens_at_start: int
    ) -> dict:
        """The final validation loss and the run's figures, as ``summary.json`` holds them."""
        from tuneops.training import distributed

        elapsed = time.monotonic() - started
        all_tokens = distributed.total(self.world, self.tokens - tokens_at_start)
        eval_loss = self.validation_loss()
        self.tracker.log_metrics({"eval_loss": eval_loss, "train_seconds": elapsed}, step=step)
        run = self.tracker.active_run() if self.world.main else None
        return {
            "output_uri": self.output_uri,
            "base_model": self.recipe.base_model,
            "base_model_path": self.base_path,
            "dataset_uri": self.dataset_uri,
            "dataset_version": self.manifest["version"],
            "recipe_hash": recipe_hash(self.recipe),
            "mlflow_run_id": run.info.run_id if run else None,
            "steps": step,
            "stopped_early_at": stopped_early_at,
            "device": self.device.type,
            "world_size": self.world.size,
            "final_train_loss": self.last_loss,
            "eval_loss": eval_loss,
            "train_examples": len(self.train_examples),
            "dropped_too_long": self.dropped,
            "padding_efficiency": self.padding_efficiency,
            "tokens_per_s": round(all_tokens / elapsed, 1),
            "resumed_from_step": self.resumed_from_step,
            "train_seconds": round(elapsed, 1),
            "trainable_params": self.trainable_params,
            "peak_memory_gib": round(_peak_memory_gib(self.device), 3),
        }

    def cleanup(self) -> None:
        """After a finished run: leave the process group, and on rank 0 remove the output's
        checkpoints (it is complete: nothing is left to resume). After a failure, nothing: the
        checkpoints stay for the retry to resume from, and the process exits with the error."""
        from tuneops.training import distributed

        if not self._finished:
            return
        distributed.finish(self.world)
        if self.world.main:
            for key in checkpoints.list_checkpoints(self.out_store, self.out_key):
                self.out_store.remove_dir(key)


def train(
    recipe: Recipe, dataset_uri: str, output_uri: str, run_id: str | None, settings: Settings, lease=None
) -> TrainingSummary:
    """Train a LoRA adapter (``LoraFinetune``) and publish it to ``output_uri``; returns its summary.

    An ``output_uri`` that is already complete is not trained again: its published summary comes
    back with ``reused=True``. ``lease`` is the ``output_lease`` held for ``output_uri``. Raises
    TrainingError for an unpublished or empty dataset, a NaN/inf loss (with the step number), out
    of GPU memory or a lost lease, and ValueError for a missing base model; nothing is published then.
    """
    job = LoraFinetune(recipe, dataset_uri, output_uri, run_id, settings, lease)
    existing = job.existing_summary()
    if existing is not None:
        log.info("output %s is already complete; returning its summary instead of training again", output_uri)
        return existing
    try:
        job.setup()
        return job.train()
    finally:
        job.cleanup()


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


def write_xcom_sidecar(summary: BaseModel, path: Path = XCOM_RETURN) -> None:
    """Inside a KubernetesPodOperator pod, hand the summary to Airflow through the XCom sidecar file."""
    if path.parent.is_dir():
        path.write_text(summary.model_dump_json())


def report_summary(summary: BaseModel) -> None:
    """How a job hands back its summary: the pod's XCom sidecar, and the last line of stdout (the
    local backend reads that one)."""
    write_xcom_sidecar(summary)
    print(summary.model_dump_json())


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
    p.add_argument(
        "--recipe-hash",
        default=None,
        metavar="HASH",
        help="the recipe hash the run was planned with; refuse to train when the resolved recipe's differs",
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
        if args.recipe_hash is not None and recipe_hash(recipe) != args.recipe_hash:
            raise TrainingError(
                f"recipe {args.recipe} (with its --set overrides) has recipe hash {recipe_hash(recipe)}, but the run "
                f"was planned with recipe hash {args.recipe_hash}: the recipe changed after the run was planned; "
                "re-run the DAG to plan it again"
            )
        settings = load_settings()
        with output_lease(args.output, settings) as lease:
            summary = train(recipe, args.dataset, args.output, args.run_id, settings, lease)
    except (ConfigError, TrainingError, ValueError, LockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary.rank is not None:  # a non-zero rank of a torchrun launch: rank 0 reports
        return 0
    report_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
