"""Dataset configs (columns, the data contract, cleaning, splits) and prompt templates.

The template model itself is ``tuneops.core.templates.PromptTemplate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tuneops.config.loading import ConfigError, StrictModel, load_model, resolve_config_path
from tuneops.core.templates import PromptTemplate


class ColumnMapping(StrictModel):
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


class ValidationRules(StrictModel):
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


class Splits(StrictModel):
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _leaves_train(self):
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave rows for train (sum < 1)")
        return self


class NearDuplicates(StrictModel):
    """MinHash/LSH near-duplicate removal; ``threshold: null`` keeps exact dedup only."""

    threshold: float | None = Field(0.85, gt=0, le=1)
    fields: list[str] = ["input"]


class Cleaning(StrictModel):
    """What the prompt dataset builder does to validated records before splitting."""

    redact_pii: list[Literal["email", "phone", "card", "ip"]] = ["email", "phone", "card", "ip"]
    near_duplicates: NearDuplicates = NearDuplicates()
    token_bounds: tuple[int, int] | None = None  # prompt + response tokens, counted with ``tokenizer``


class Accumulate(StrictModel):
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


class DatasetConfig(StrictModel):
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
