"""Typed configuration: dataset configs, prompt templates, recipes, safety suites and monitor
configs, loaded from YAML.

Every file is validated into a pydantic model that forbids unknown keys, so a typo fails
before any compute with the bad key's dotted path and the keys that are allowed there.
Names without a path (``tiny-local``) resolve to the files shipped in ``tuneops/configs``.

One module per kind of config: ``dataset``, ``recipe`` (with ``compute``), ``safety``,
``monitoring``; ``overrides`` holds what DAG Params and sweeps may change in a recipe, and
``loading`` the YAML loading and error messages all of them share. Import from here.
"""

from tuneops.config.compute import (
    CacheVolume,
    ComputeConfig,
    KubernetesCompute,
    Toleration,
)
from tuneops.config.dataset import (
    RULES,
    Accumulate,
    Cleaning,
    ColumnMapping,
    DatasetConfig,
    NearDuplicates,
    Splits,
    ValidationRules,
    load_dataset_config,
    load_template,
)
from tuneops.config.loading import (
    CONFIG_DIR,
    ConfigError,
    dotted_to_nested,
    load_model,
    resolve_config_path,
)
from tuneops.config.monitoring import (
    AlertConfig,
    DriftThresholds,
    FeedbackThresholds,
    HealthThresholds,
    MonitorConfig,
    load_monitor_config,
)
from tuneops.config.overrides import (
    ALLOWED_OVERRIDES_ENV,
    MAX_SWEEP_TRIALS_ENV,
    PROTECTED_KEYS,
    RECIPE_DIRS_ENV,
    OverrideRefused,
    check_overrides,
    check_recipe_ref,
    check_sweep,
    count_trials,
    expand_sweep,
    override_allowed,
)
from tuneops.config.recipe import (
    LOWER_IS_BETTER,
    SPLIT_METRICS,
    CompressionConfig,
    Decoding,
    EvalConfig,
    GateRules,
    LoraConfig,
    MetricRule,
    Recipe,
    RegistryConfig,
    TrainConfig,
    load_recipe,
    metric_names,
    recipe_hash,
)
from tuneops.config.safety import (
    SAFETY_KINDS,
    SAFETY_METRICS,
    SafetyProbe,
    SafetySuite,
    load_safety_suite,
)

__all__ = [
    "CacheVolume",
    "ComputeConfig",
    "KubernetesCompute",
    "Toleration",
    "RULES",
    "Accumulate",
    "Cleaning",
    "ColumnMapping",
    "DatasetConfig",
    "NearDuplicates",
    "Splits",
    "ValidationRules",
    "load_dataset_config",
    "load_template",
    "CONFIG_DIR",
    "ConfigError",
    "dotted_to_nested",
    "load_model",
    "resolve_config_path",
    "AlertConfig",
    "DriftThresholds",
    "FeedbackThresholds",
    "HealthThresholds",
    "MonitorConfig",
    "load_monitor_config",
    "ALLOWED_OVERRIDES_ENV",
    "MAX_SWEEP_TRIALS_ENV",
    "PROTECTED_KEYS",
    "RECIPE_DIRS_ENV",
    "OverrideRefused",
    "check_overrides",
    "check_recipe_ref",
    "check_sweep",
    "count_trials",
    "expand_sweep",
    "override_allowed",
    "LOWER_IS_BETTER",
    "SPLIT_METRICS",
    "CompressionConfig",
    "Decoding",
    "EvalConfig",
    "GateRules",
    "LoraConfig",
    "MetricRule",
    "Recipe",
    "RegistryConfig",
    "TrainConfig",
    "load_recipe",
    "recipe_hash",
    "metric_names",
    "SAFETY_KINDS",
    "SAFETY_METRICS",
    "SafetyProbe",
    "SafetySuite",
    "load_safety_suite",
]
