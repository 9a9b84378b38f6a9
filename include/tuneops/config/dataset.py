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
    """Canonical column <- raw column. Only ``response`` (or ``messages``) is required.

    Without ``id``, each row's id is a content hash of its canonical values; without
    ``input``, every input is "" (instruction-only data). ``messages`` maps a chat
    conversation (a list of ``{"role", "content"}``) that yields ``instruction``, ``input``
    and ``response`` itself, so it replaces those three. With ``explode`` set in the dataset
    config, fields of the exploded list's items are named ``<list>.<field>`` (e.g.
    ``instances.output``).
    """

    id: str | None = None
    input: str | None = None
    response: str | None = None
    instruction: str | None = None
    label: str | None = None
    messages: str | None = None

    @model_validator(mode="after")
    def _one_source_of_text(self):
        if self.messages is not None:
            clash = [name for name in ("instruction", "input", "response") if getattr(self, name)]
            if clash:
                raise ValueError(
                    f"'messages' already yields instruction, input and response: map 'messages' or {clash}, not both"
                )
        elif self.response is None:
            raise ValueError("map 'response' (or 'messages') to the raw column holding the target text")
        elif self.input is None and self.instruction is None:
            raise ValueError(
                "map 'input' or 'instruction' (or 'messages') to the raw column holding the prompt text; "
                "without one every prompt would be empty"
            )
        return self

    def canonical_fields(self) -> set[str]:
        """The canonical fields a validated batch holds (besides ``keep`` columns)."""
        fields = {"id", "input", "response"}
        if self.instruction or self.messages:
            fields.add("instruction")
        if self.label:
            fields.add("label")
        return fields


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
    """The data contract's expectations; each is critical unless named in ``warn_only``.

    The prompt-side rules (``not_null``, ``not_empty``, ``encoding``, ``input_chars``,
    ``input_tokens``, ``max_duplicate_rate``, ``max_pii_rate``) check the prompt text: the
    input, or with an instruction mapped, the instruction and input joined by a blank line.
    ``unique_id`` applies only to a mapped id (generated ids repeat for repeated rows).
    """

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
    """MinHash/LSH near-duplicate removal over ``fields`` (joined); ``threshold: null`` keeps exact dedup only.

    Exact duplicates are always decided on the whole rendered prompt and response. A row
    whose ``fields`` hold no text takes no part in near-duplicate clustering.
    """

    threshold: float | None = Field(0.85, gt=0, le=1)
    fields: list[str] = ["input"]


class Cleaning(StrictModel):
    """What the prompt dataset builder does to validated records before splitting.

    ``end_markers`` are end-of-text markers stripped from the end of each response (the
    trainer appends the model's own EOS); ``[]`` keeps responses as they are.
    """

    redact_pii: list[Literal["email", "phone", "card", "ip"]] = ["email", "phone", "card", "ip"]
    near_duplicates: NearDuplicates = NearDuplicates()
    token_bounds: tuple[int, int] | None = None  # prompt + response tokens, counted with ``tokenizer``
    end_markers: list[str] = ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>", "<|eot_id|>", "<|end|>"]

    @model_validator(mode="after")
    def _markers_have_text(self):
        if any(not marker.strip() for marker in self.end_markers):
            raise ValueError("end_markers must not hold an empty or blank marker")
        return self


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
    template: str = "generic_v1"  # a shipped name, or a .yaml path relative to this file
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
    """A dataset config; relative ``golden`` and ``template`` paths are taken relative to the config file.

    ``template`` is a path when it ends in ``.yaml``/``.yml``, else a shipped template's name.
    Raises ConfigError naming the config file and the path looked for when either is missing.
    """
    source = resolve_config_path(ref, "datasets")
    config = load_model(DatasetConfig, ref, "datasets")

    def next_to_config(relative: str, what: str) -> str:
        path = source.parent / relative
        if not path.is_file():
            raise ConfigError(f"{source}: {what} {relative} not found (looked for {path})")
        return str(path.resolve())

    updates = {}
    golden, template = config.golden, config.template
    if golden and "://" not in golden and not Path(golden).is_absolute():
        updates["golden"] = next_to_config(golden, "golden file")
    if Path(template).suffix in (".yaml", ".yml") and not Path(template).is_absolute():
        updates["template"] = next_to_config(template, "template file")
    return config.model_copy(update=updates)


def load_template(ref: str | Path) -> PromptTemplate:
    return load_model(PromptTemplate, ref, "templates")
