"""Recipes: LoRA, training, evaluation, gate, registry, compute and compression settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tuneops.config.compute import ComputeConfig
from tuneops.config.loading import StrictModel, load_model
from tuneops.config.safety import SAFETY_METRICS
from tuneops.core.hashing import hash_json


class LoraConfig(StrictModel):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    quantize_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CUDA only)


class TrainConfig(StrictModel):
    max_steps: int = Field(300, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    learning_rate: float = Field(2e-3, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_seq_len: int = Field(256, gt=8)
    seed: int = 0
    log_every: int = Field(20, gt=0)
    max_train_examples: int | None = Field(None, gt=0)
    group_by_length: bool = True
    checkpoint_every: int | None = Field(50, gt=0)  # steps; null: no checkpoints, a retry starts over
    keep_checkpoints: int = Field(2, gt=0)
    eval_every: int | None = Field(None, gt=0)  # steps between validation-loss evaluations
    early_stopping_patience: int | None = Field(None, gt=0)  # evaluations without improvement, then stop
    early_stopping_min_delta: float = Field(1e-4, ge=0)  # a smaller drop in validation loss is no improvement
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32

    @model_validator(mode="after")
    def _patience_needs_evals(self):
        if self.early_stopping_patience and not self.eval_every:
            raise ValueError("early_stopping_patience counts evaluations: set eval_every too")
        return self


class Decoding(StrictModel):
    """Decoding settings for evaluation and serving; greedy unless ``do_sample`` is set."""

    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0


class EvalConfig(StrictModel):
    max_examples: int = Field(64, gt=0)  # per split
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    splits: list[Literal["test", "golden"]] = Field(["test", "golden"], min_length=1)
    decoding: Decoding = Decoding()
    safety_suite: str = "support-triage"  # shipped name or YAML path


# Metrics the evaluation produces per split ("test.rougeL"); the safety suite's are SAFETY_METRICS.
SPLIT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "perplexity", "format_valid")
LOWER_IS_BETTER = frozenset({"perplexity"})


def metric_names(splits=("test", "golden")) -> list[str]:
    """Every gateable metric name, in report order."""
    return [f"{split}.{m}" for split in splits for m in SPLIT_METRICS] + list(SAFETY_METRICS)


class MetricRule(StrictModel):
    """Thresholds for one metric. Improvements and regressions respect the metric's direction
    (for perplexity, lower is better)."""

    min_value: float | None = None
    max_value: float | None = None
    min_improvement_over_base: float | None = None
    min_improvement_over_champion: float | None = None
    max_regression_vs_champion: float | None = Field(None, ge=0)


class GateRules(StrictModel):
    """Per-metric rules plus the safety floor; every rule must hold for a candidate to pass."""

    rules: dict[str, MetricRule] = {
        "test.rougeL": MetricRule(min_value=0.0, max_regression_vs_champion=0.0),
    }
    safety_floor: float = Field(1.0, ge=0, le=1)  # minimum safety.pass_rate

    @model_validator(mode="after")
    def _known_metrics(self):
        unknown = sorted(set(self.rules) - set(metric_names()))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown} in gate.rules; valid: {', '.join(metric_names())}")
        return self


class RegistryConfig(StrictModel):
    model_name: str = Field("tuneops-support-triage", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    auto_approve: bool = True


class CompressionConfig(StrictModel):
    """The quantized serving variant and the gate it must pass against the merged model."""

    variant: Literal["int8", "bnb-8bit", "bnb-4bit"] = "int8"  # bnb-* need CUDA
    max_quality_loss: float = Field(0.02, ge=0, le=1)  # per metric, vs the merged model
    metrics: list[str] = ["test.rougeL", "golden.rougeL", "test.format_valid"]
    latency_examples: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _known_metrics(self):
        unknown = sorted(set(self.metrics) - set(metric_names()) - set(SAFETY_METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {metric_names()}")
        return self


class Recipe(StrictModel):
    base_model: str
    trust_remote_code: bool = False
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateRules = GateRules()
    registry: RegistryConfig = RegistryConfig()
    compute: ComputeConfig = ComputeConfig()
    compression: CompressionConfig = CompressionConfig()


def recipe_hash(recipe: Recipe) -> str:
    """Hash of what decides the trained weights (base model, LoRA, training); eval, gate,
    registry and compute settings are left out, so changing a gate threshold does not retrain."""
    return hash_json(recipe.model_dump(include={"base_model", "trust_remote_code", "lora", "train"}))[:12]


def load_recipe(ref: str | Path, overrides: dict | None = None) -> Recipe:
    return load_model(Recipe, ref, "recipes", overrides)
