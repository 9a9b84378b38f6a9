"""Loading YAML config files into strict pydantic models.

Every file is validated into a model that forbids unknown keys, so a typo fails before any
compute with the bad key's dotted path and the keys that are allowed there. Names without a
path (``tiny-local``) resolve to the files shipped in ``tuneops/configs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tuneops.core.excerpt import excerpt

CONFIG_DIR = Path(__file__).parents[1] / "configs"


class ConfigError(ValueError):
    """A config file is missing, unreadable or has a bad key or value."""


class StrictModel(BaseModel):
    """Base of every config model: an unknown key is an error, and a loaded config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_errors(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line for ``source`` naming each bad key of ``err``, with the keys valid there."""
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


def path_is_file(path: Path) -> bool:
    """Whether ``path`` is an existing file; a path the OS cannot even look up is not."""
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no such file either way
        return False


def resolve_config_path(ref: str | Path, kind: str) -> Path:
    """A path as given, or the shipped ``configs/<kind>/<ref>.yaml`` for a bare name."""
    path = Path(ref)
    is_file = path_is_file(path)
    if path.suffix in (".yaml", ".yml") or is_file:
        if not is_file:
            raise ConfigError(f"{kind[:-1]} file {excerpt(ref)} does not exist")
        return path
    shipped = CONFIG_DIR / kind / f"{ref}.yaml"
    if not path_is_file(shipped):
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
    data = merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, model, str(path))) from None


def merge(base: dict, override: dict) -> dict:
    """Nested ``override`` over nested ``base``; neither is changed."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


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
            merge(node[leaf], value)
            if isinstance(node.get(leaf), dict) and isinstance(value, dict)
            else value
        )
    return nested
