"""What DAG Params and sweeps may override in a recipe, and how a sweep expands into trials."""

from __future__ import annotations

from pathlib import Path

from tuneops.config.loading import CONFIG_DIR, ConfigError, dotted_to_nested, path_is_file
from tuneops.core.excerpt import excerpt

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
    if path.suffix not in (".yaml", ".yml") and not path_is_file(path):
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
