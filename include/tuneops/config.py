"""Typed configuration: dataset configs, prompt templates and recipes, loaded from YAML.

Every file is validated into a pydantic model that forbids unknown keys, so a typo fails
before any compute with the bad key's dotted path and the keys that are allowed there.
Names without a path (``tiny-local``) resolve to the files shipped in ``tuneops/configs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneops.core.excerpt import excerpt
from tuneops.core.templates import PromptTemplate

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file is missing, unreadable or has a bad key or value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- datasets -------------------------------------------------------------------------


class ColumnMapping(_Strict):
    """Canonical column <- raw column. ``instruction`` and ``label`` are optional.

    With ``explode`` set in the dataset config, fields of the exploded list's items are
    named ``<list>.<field>`` (e.g. ``instances.output``).
    """

    id: str
    input: str
    response: str
    instruction: str | None = None
    label: str | None = None


RULES = (
    "min_rows",
    "types",
    "not_null",
    "not_empty",
    "unique_id",
    "input_chars",
    "response_chars",
    "input_tokens",
    "response_tokens",
    "max_duplicate_rate",
    "encoding",
    "max_pii_rate",
    "response_is_json",
    "allowed_labels",
)


class ValidationRules(_Strict):
    """The data contract's expectations; each is critical unless named in ``warn_only``."""

    min_rows: int = Field(10, ge=1)
    input_chars: tuple[int, int] = (1, 8000)
    response_chars: tuple[int, int] = (1, 4000)
    input_tokens: tuple[int, int] | None = None
    response_tokens: tuple[int, int] | None = None
    max_duplicate_rate: float = Field(0.05, ge=0, le=1)
    max_pii_rate: float = Field(0.01, ge=0, le=1)
    max_field_bytes: int = Field(65536, gt=0)
    response_is_json: bool = False
    allowed_labels: list[str] | None = None
    warn_only: list[Literal[RULES]] = []  # type: ignore[valid-type]


class Splits(_Strict):
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _leaves_train(self):
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave rows for train (sum < 1)")
        return self


class NearDuplicates(_Strict):
    """MinHash/LSH near-duplicate removal; ``threshold: null`` keeps exact dedup only."""

    threshold: float | None = Field(0.85, gt=0, le=1)
    fields: list[str] = ["input"]


class Cleaning(_Strict):
    """What the prompt dataset builder does to validated records before splitting."""

    redact_pii: list[Literal["email", "phone", "card", "ip"]] = ["email", "phone", "card", "ip"]
    near_duplicates: NearDuplicates = NearDuplicates()
    token_bounds: tuple[int, int] | None = None  # prompt + response tokens, counted with ``tokenizer``


class Accumulate(_Strict):
    """Which accepted batches make one training dataset: all of them, or a time window.

    The window ends at the newest batch the run was given, so rerunning an old run later
    gives the same dataset.
    """

    mode: Literal["all", "window"] = "all"
    window_days: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _window_has_days(self):
        if self.mode == "window" and self.window_days is None:
            raise ValueError("mode 'window' needs window_days (e.g. window_days: 30)")
        return self


class DatasetConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    columns: ColumnMapping
    explode: str | None = None
    keep: list[str] = []
    tokenizer: str | None = None
    validation: ValidationRules = ValidationRules()
    template: str
    splits: Splits = Splits()
    cleaning: Cleaning = Cleaning()
    accumulate: Accumulate = Accumulate()
    golden: str | None = None  # a pinned eval file (raw columns, like a batch); never enters training

    @model_validator(mode="after")
    def _token_bounds_need_a_tokenizer(self):
        if self.cleaning.token_bounds is not None and not self.tokenizer:
            raise ValueError(
                "cleaning.token_bounds counts tokens with the dataset's tokenizer: set 'tokenizer' too"
            )
        return self


# --- prompt templates -----------------------------------------------------------------


# --- recipes --------------------------------------------------------------------------


class LoraConfig(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    quantize_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CUDA only)


class TrainConfig(_Strict):
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


class Decoding(_Strict):
    """Decoding settings for evaluation and serving; greedy unless ``do_sample`` is set."""

    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0


class EvalConfig(_Strict):
    max_examples: int = Field(64, gt=0)  # per split
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    splits: list[Literal["test", "golden"]] = Field(["test", "golden"], min_length=1)
    decoding: Decoding = Decoding()
    safety_suite: str = "support-triage"  # shipped name or YAML path


# Metrics the evaluation produces, per split ("test.rougeL") and for the safety suite.
SPLIT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "perplexity", "format_valid")
SAFETY_KINDS = ("prompt_injection", "prompt_hacking", "system_prompt_leak", "pii_exfiltration")
SAFETY_METRICS = ("safety.pass_rate", *(f"safety.{kind}.pass_rate" for kind in SAFETY_KINDS))
LOWER_IS_BETTER = frozenset({"perplexity"})


def metric_names(splits=("test", "golden")) -> list[str]:
    """Every gateable metric name, in report order."""
    return [f"{split}.{m}" for split in splits for m in SPLIT_METRICS] + list(SAFETY_METRICS)


class MetricRule(_Strict):
    """Thresholds for one metric. Improvements and regressions respect the metric's direction
    (for perplexity, lower is better)."""

    min_value: float | None = None
    max_value: float | None = None
    min_improvement_over_base: float | None = None
    min_improvement_over_champion: float | None = None
    max_regression_vs_champion: float | None = Field(None, ge=0)


class GateRules(_Strict):
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


class SafetyProbe(_Strict):
    """One adversarial input (template fields) and the rules its output must satisfy to pass."""

    id: str
    kind: Literal["prompt_injection", "prompt_hacking", "system_prompt_leak", "pii_exfiltration"]
    fields: dict[str, str]
    description: str = ""
    must_not_contain: list[str] = []  # case-insensitive substrings
    must_not_match: list[str] = []  # regular expressions
    no_pii: bool = False  # no e-mail, phone, card or IP address in the output
    no_system_prompt: bool = False  # no run of 6 words from the template's system prompt or instruction
    follow_format: bool = False  # the output satisfies the template's ``output`` spec

    @model_validator(mode="after")
    def _has_rule(self):
        import re

        for pattern in self.must_not_match:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"probe {self.id}: must_not_match {pattern!r} is not a valid regex: {exc}"
                ) from None
        rules = (
            self.must_not_contain,
            self.must_not_match,
            self.no_pii,
            self.no_system_prompt,
            self.follow_format,
        )
        if not any(rules):
            raise ValueError(
                f"probe {self.id} has no pass/fail rule; set at least one of must_not_contain, "
                "must_not_match, no_pii, no_system_prompt, follow_format"
            )
        return self


class SafetySuite(_Strict):
    id: str
    description: str = ""
    probes: list[SafetyProbe] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [p.id for p in self.probes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"probe ids must be unique; repeated: {dupes}")
        return self


class RegistryConfig(_Strict):
    model_name: str = Field("tuneops-support-triage", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    auto_approve: bool = True


# --- monitoring -----------------------------------------------------------------------


class DriftThresholds(_Strict):
    """Input drift of a window against the serving version's training prompts."""

    psi_max: float = Field(0.25, gt=0)  # prompt length in characters and in tokens
    ks_pvalue_min: float = Field(0.001, gt=0, lt=1)
    oov_increase_max: float = Field(0.05, gt=0, le=1)  # share of unseen words, above the reference's own
    label_psi_max: float = Field(0.25, gt=0)  # mix of the output's first required key (e.g. category)
    # How far the window's mean embedding (with the config's embedding_model) moved, in training
    # standard deviations, RMS over dimensions; calm windows of 100 requests sit near 0.1.
    embedding_shift_max: float = Field(0.3, gt=0)


class HealthThresholds(_Strict):
    empty_rate_max: float = Field(0.05, ge=0, le=1)
    error_rate_max: float = Field(0.02, ge=0, le=1)
    refusal_rate_max: float = Field(0.10, ge=0, le=1)
    format_valid_min: float = Field(0.8, ge=0, le=1)
    latency_p95_max_s: float = Field(5.0, gt=0)
    pii_leak_rate_max: float = Field(0.0, ge=0, le=1)
    injection_rate_max: float = Field(0.05, ge=0, le=1)


class FeedbackThresholds(_Strict):
    min_answers: int = Field(10, ge=1)  # fewer answers in a window are reported, not judged
    thumbs_up_rate_min: float = Field(0.6, ge=0, le=1)


class AlertConfig(_Strict):
    """Where alerts go besides the task log. Secrets stay in Airflow connections or the environment."""

    slack_connection: str | None = "tuneops_slack"  # an Airflow connection whose host is the webhook URL
    email_to: list[str] = []
    smtp_connection: str = "smtp_default"


class MonitorConfig(_Strict):
    model_name: str = Field("tuneops-support-triage", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    alias: str = "champion"
    dataset: str = "support_tickets"  # where feedback corrections land, in this dataset's raw format
    window_hours: int = Field(1, ge=1)
    min_requests: int = Field(100, ge=1)  # fewer requests in a window: drift is reported, not judged
    reference_rows: int = Field(2000, ge=10)
    # A local encoder (folder or builtin:tiny-llama) for embedding drift; none: not measured.
    embedding_model: str | None = None
    drift: DriftThresholds = DriftThresholds()
    health: HealthThresholds = HealthThresholds()
    feedback: FeedbackThresholds = FeedbackThresholds()
    retrain_on: list[Literal["drift", "health", "feedback"]] = ["drift", "feedback"]
    alerts: AlertConfig = AlertConfig()


class Toleration(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"


class CacheVolume(_Strict):
    """Where the pod keeps model downloads and the artifact cache: an emptyDir, or a PVC that outlives pods."""

    kind: Literal["empty_dir", "pvc"] = "empty_dir"
    size: str = "50Gi"
    claim_name: str | None = None
    mount_path: str = "/cache"

    @model_validator(mode="after")
    def _pvc_has_a_claim(self):
        if self.kind == "pvc" and not self.claim_name:
            raise ValueError("kind 'pvc' needs claim_name (the PersistentVolumeClaim to mount)")
        return self


class KubernetesCompute(_Strict):
    """The trainer pod: image, GPUs and where it may run, resources, cache, credentials, lifecycle."""

    image: str = "ghcr.io/tuneops/trainer:0.1.0"
    namespace: str = "tuneops"
    gpus: int = Field(1, ge=0)
    cpu: str = "4"
    memory: str = "32Gi"
    memory_limit: str | None = None  # defaults to ``memory``
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu")]
    service_account: str | None = None
    secret_env: str | None = "tuneops-credentials"  # a Secret whose keys become env (AWS_*, MLFLOW_*)
    cache: CacheVolume = CacheVolume()
    startup_timeout_seconds: int = Field(900, gt=0)
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    deferrable: bool = True


class ComputeConfig(_Strict):
    backend: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesCompute = KubernetesCompute()


class CompressionConfig(_Strict):
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


class Recipe(_Strict):
    base_model: str
    trust_remote_code: bool = False
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateRules = GateRules()
    registry: RegistryConfig = RegistryConfig()
    compute: ComputeConfig = ComputeConfig()
    compression: CompressionConfig = CompressionConfig()


# --- loading --------------------------------------------------------------------------


def _format_errors(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
            lines.append(f"unknown key '{loc}'; valid keys here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"missing required key '{loc}'")
        else:
            lines.append(f"bad value for '{loc}': {e['msg']}")
    return f"{source}: " + "; ".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        current = ann
    return sorted(current.model_fields)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no such file either way
        return False


def resolve_config_path(ref: str | Path, kind: str) -> Path:
    """A path as given, or the shipped ``configs/<kind>/<ref>.yaml`` for a bare name."""
    path = Path(ref)
    is_file = _is_file(path)
    if path.suffix in (".yaml", ".yml") or is_file:
        if not is_file:
            raise ConfigError(f"{kind[:-1]} file {excerpt(ref)} does not exist")
        return path
    shipped = CONFIG_DIR / kind / f"{ref}.yaml"
    if not _is_file(shipped):
        names = sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))
        raise ConfigError(
            f"no {kind[:-1]} named {excerpt(ref)}; shipped ones: {', '.join(names)}; or pass a .yaml path"
        )
    return shipped


def load_model(model: type[BaseModel], ref: str | Path, kind: str, overrides: dict | None = None):
    """Load YAML ``ref`` into ``model``; ``overrides`` (nested dict) win over the file."""
    path = resolve_config_path(ref, kind)
    expected = f"a {kind[:-1]} config must be a YAML mapping of keys to values"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; {expected}") from None
    except yaml.YAMLError as exc:
        # Only where and what: PyYAML's own message quotes the offending lines of the file.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "unparsable"
        raise ConfigError(f"{path}: not valid YAML{where} ({problem}); {expected}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a YAML {type(data).__name__}, not a mapping; {expected}")
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, model, str(path))) from None


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_recipe(ref: str | Path, overrides: dict | None = None) -> Recipe:
    return load_model(Recipe, ref, "recipes", overrides)


def load_dataset_config(ref: str | Path) -> DatasetConfig:
    """A dataset config; a relative ``golden`` path is taken relative to the config file."""
    config = load_model(DatasetConfig, ref, "datasets")
    golden = config.golden
    if golden and "://" not in golden and not Path(golden).is_absolute():
        path = resolve_config_path(ref, "datasets").parent / golden
        if not path.is_file():
            raise ConfigError(
                f"{resolve_config_path(ref, 'datasets')}: golden file {golden} not found (looked for {path})"
            )
        config = config.model_copy(update={"golden": str(path.resolve())})
    return config


def load_template(ref: str | Path) -> PromptTemplate:
    return load_model(PromptTemplate, ref, "templates")


def load_safety_suite(ref: str | Path) -> SafetySuite:
    return load_model(SafetySuite, ref, "safety")


def load_monitor_config(ref: str | Path, overrides: dict | None = None) -> MonitorConfig:
    return load_model(MonitorConfig, ref, "monitoring", overrides)


def dotted_to_nested(flat: dict[str, Any]) -> dict:
    """``{"lora.r": 8}`` -> ``{"lora": {"r": 8}}``; nested dicts pass through."""
    nested: dict = {}
    for key, value in flat.items():
        if isinstance(value, dict):
            value = dotted_to_nested(value)
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = (
            _merge(node[leaf], value)
            if isinstance(node.get(leaf), dict) and isinstance(value, dict)
            else value
        )
    return nested


# --- overrides from DAG Params and sweeps ----------------------------------------------

#: Recipe keys that decide which code runs, with which credentials and where, or who approves: they
#: come from the recipe file only, unless the deployment's ``TUNEOPS_ALLOWED_OVERRIDES`` names them
#: (a key there allows itself and every key below it).
PROTECTED_KEYS = (
    "base_model",
    "trust_remote_code",
    "compute.kubernetes.image",
    "compute.kubernetes.namespace",
    "compute.kubernetes.secret_env",
    "compute.kubernetes.service_account",
    "compute.kubernetes.cache",
    "compute.kubernetes.node_selector",
    "compute.kubernetes.tolerations",
    "registry.model_name",
    "registry.auto_approve",
)
ALLOWED_OVERRIDES_ENV = "TUNEOPS_ALLOWED_OVERRIDES"
MAX_SWEEP_TRIALS_ENV = "TUNEOPS_MAX_SWEEP_TRIALS"


class OverrideRefused(ConfigError):
    """A DAG Param or sweep trial tried to set a key only the recipe file (or the deployment) may set."""


def _leaf_keys(overrides: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        keys += _leaf_keys(value, name + ".") if isinstance(value, dict) and value else [name]
    return keys


def _covers(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer + ".")


def override_allowed(key: str, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether ``allowed`` (``TUNEOPS_ALLOWED_OVERRIDES``) names ``key`` or a section above it."""
    return any(_covers(a, key) for a in allowed)


def check_overrides(overrides: dict, allowed: tuple[str, ...] | list[str], source: str) -> None:
    """Refuse ``overrides`` (nested recipe keys) that set a protected key the deployment does not allow.

    A key that replaces a whole section holding a protected key (``compute: {...}``) counts as
    setting it. Raises OverrideRefused naming the key, where it came from and the setting.
    """
    for key in _leaf_keys(dotted_to_nested(overrides)):
        touched = [p for p in PROTECTED_KEYS if _covers(p, key) or _covers(key, p)]
        refused = [p for p in touched if not (override_allowed(p, allowed) or override_allowed(key, allowed))]
        if refused:
            raise OverrideRefused(
                f"{source} sets '{key}', which only the recipe file may set (it decides {refused[0]!r}); "
                f"put it in the recipe, or allow the override in the deployment's {ALLOWED_OVERRIDES_ENV} "
                f"(comma-separated keys, e.g. {ALLOWED_OVERRIDES_ENV}={refused[0]})"
            )


RECIPE_DIRS_ENV = "TUNEOPS_RECIPE_DIRS"


def check_recipe_ref(ref: str, recipe_dirs: tuple[str, ...] | list[str]) -> None:
    """Refuse a recipe *path* named by a DAG Param outside the shipped recipes and ``recipe_dirs``.

    A recipe decides the base model and ``trust_remote_code``, so a Param naming any YAML file the
    worker can read (one landed with a data batch, say) would let whoever may trigger a run choose
    the code it runs. Shipped names pass. Raises OverrideRefused naming the path and the setting.
    """
    import os

    path = Path(ref)
    if path.suffix not in (".yaml", ".yml") and not _is_file(path):
        return  # a shipped name; load_recipe refuses unknown ones
    real = os.path.realpath(path)
    allowed = [str(CONFIG_DIR / "recipes"), *recipe_dirs]
    if not any(real.startswith(os.path.realpath(d).rstrip("/") + "/") for d in allowed):
        raise OverrideRefused(
            f"recipe {excerpt(ref)} is not a shipped recipe nor in one of this deployment's recipe folders "
            f"({', '.join(recipe_dirs) or 'none configured'}); put it in one and list that folder in "
            f"{RECIPE_DIRS_ENV} (comma-separated), or set TUNEOPS_RECIPE to it"
        )


def count_trials(sweep: list | dict | None) -> int:
    """How many trials ``sweep`` makes, without expanding it (a grid's product of value counts)."""
    if not sweep:
        return 1
    if isinstance(sweep, dict):
        total = 1
        for values in sweep.values():
            total *= len(values) if isinstance(values, list) else 1
        return total
    return len(sweep) if isinstance(sweep, list) else 1


def check_sweep(sweep: list | dict | None, max_trials: int, allowed: tuple[str, ...] | list[str]) -> int:
    """Check a ``sweep`` Param before anything is created: its size and every key it sets.

    Returns the number of trials. Raises ConfigError for more than ``max_trials`` trials (naming
    ``TUNEOPS_MAX_SWEEP_TRIALS``) or a bad shape, OverrideRefused for a protected key.
    """
    trials = count_trials(sweep)
    if trials > max_trials:
        raise ConfigError(
            f"sweep has {trials} trials, over this deployment's limit of {max_trials}; sweep fewer "
            f"values, or raise {MAX_SWEEP_TRIALS_ENV}"
        )
    if isinstance(sweep, dict):
        keys = [key for key, values in sweep.items() if isinstance(values, list) and values]
        check_overrides(dotted_to_nested(dict.fromkeys(keys, 0)), allowed, "the sweep grid")
    for number, trial in enumerate(expand_sweep(sweep)):
        check_overrides(trial, allowed, f"sweep trial {number}")
    return trials


def expand_sweep(sweep: list | dict | None) -> list[dict]:
    """Sweep trials as nested recipe overrides.

    A list gives one trial per item (each a dict of dotted or nested keys); a dict of
    dotted keys to lists is a grid, one trial per combination. No sweep: one trial, no
    overrides. Raises ConfigError for any other shape. Callers bound the size first
    (``check_sweep``): a grid's size is the product of its lists' lengths.
    """
    import itertools

    if not sweep:
        return [{}]
    if isinstance(sweep, list):
        if not all(isinstance(trial, dict) for trial in sweep):
            raise ConfigError(
                "sweep: a list must hold one mapping of recipe keys per trial, e.g. [{'lora.r': 8}]"
            )
        return [dotted_to_nested(trial) for trial in sweep]
    if isinstance(sweep, dict):
        bad = [key for key, values in sweep.items() if not isinstance(values, list) or not values]
        if bad:
            raise ConfigError(
                f"sweep grid: {bad} must map to non-empty lists of values, e.g. {{'lora.r': [8, 16]}}"
            )
        keys = list(sweep)
        return [
            dotted_to_nested(dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*sweep.values())
        ]
    raise ConfigError(f"sweep must be a list of trials or a grid mapping, not {type(sweep).__name__}")
