"""What stages hand each other: typed contracts, serialized to JSON for XCom and the pod's ``return.json``.

Each is a frozen pydantic model. A task returns ``model.model_dump(mode="json")``; the next one
rebuilds it with ``Model.model_validate(value)``, which also accepts the model itself. Unknown
keys are refused, so a contract that drifts between producer and consumer fails where it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, RootModel

from tuneops.config import KubernetesCompute, Recipe, recipe_hash

MANIFEST_FILE = "manifest.json"


class Contract(BaseModel):
    # NaN (a diverged loss) must survive JSON: the gate and the sweep refuse it by name.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class DatasetManifest(BaseModel):
    """A published prompt dataset version's ``manifest.json`` (see ``tuneops.data.prompts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    version: str
    counts: dict[str, int]
    dropped: dict[str, int]
    pii_redacted: dict[str, int]
    token_lengths: dict[str, dict[str, Any]] | None
    tokenizer: str | None
    source_batches: list[dict[str, Any]]
    golden: dict[str, Any] | None
    cleaning: dict[str, Any]
    splits: dict[str, Any]
    feedback: dict[str, Any]
    template_id: str
    template_hash: str
    template_format: str
    add_special_tokens: bool
    template: dict[str, Any]
    library_version: str
    cleaning_version: int
    # End-of-text markers stripped from responses, by marker; absent from older manifests.
    markers_stripped: dict[str, int] = {}

    @classmethod
    def load(cls, dataset_dir: Path | str) -> DatasetManifest:
        """The manifest of a dataset folder (as fetched from the artifact store)."""
        return cls.model_validate(json.loads((Path(dataset_dir) / MANIFEST_FILE).read_text()))


class Plan(Contract):
    """One training run: the fully resolved recipe (trial overrides applied) and where everything goes.

    Every later step (training, evaluation, gate, registration) reads ``recipe`` from here, so
    they all use exactly what training used.
    """

    #: The project the run is for (``tuneops.config.project``); None for a CLI run given only a recipe.
    project: str | None = None
    recipe_ref: str
    recipe: Recipe
    #: What the project sets in the recipe (registered model name, safety suite); never in the recipe hash.
    project_overrides: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    trial: int = 0
    dataset_uri: str
    dataset_version: str
    template_id: str
    template_hash: str
    output_uri: str
    mlflow_run_id: str
    compute: Literal["local", "kubernetes"]

    @property
    def recipe_hash(self) -> str:
        """What decides the trained weights (``tuneops.config.recipe_hash``); the trainer checks it."""
        return recipe_hash(self.recipe)

    @property
    def model_name(self) -> str:
        return self.recipe.registry.model_name


class TrainingSummary(Contract):
    """What the trainer prints (local backend) or writes to ``return.json`` (pod).

    ``mlflow_run_id`` and ``adapter_sha256`` are None only on the non-zero ranks of a torchrun
    launch (``rank`` set), which neither log nor publish; ``eval_loss`` is NaN for a dataset
    without validation rows; ``reused`` is True for an output that was already complete.
    """

    output_uri: str
    base_model: str
    base_model_path: str
    dataset_uri: str
    dataset_version: str
    recipe_hash: str
    mlflow_run_id: str | None
    steps: int
    stopped_early_at: int | None
    device: str
    world_size: int
    final_train_loss: float
    eval_loss: float
    train_examples: int
    dropped_too_long: int
    padding_efficiency: float
    tokens_per_s: float
    resumed_from_step: int
    train_seconds: float
    trainable_params: int
    peak_memory_gib: float
    adapter_sha256: str | None = None
    rank: int | None = None
    reused: bool = False


class SweepTrial(Contract):
    """One row of the sweep table logged to the plan's MLflow run."""

    trial: int
    overrides: dict[str, Any]
    eval_loss: float
    tokens_per_s: float
    train_seconds: float
    gpu_hours: float


class SweepChoice(Contract):
    """The trial that goes on to evaluation, with its training summary and the whole table."""

    plan: Plan
    summary: TrainingSummary
    table: list[SweepTrial]


class RoleEvaluation(Contract):
    """One model's scores (``base``, ``candidate``, ``champion``), or the error that stopped them."""

    fingerprint: str
    metrics: dict[str, float] | None = None
    n: dict[str, int] | None = None  # examples per split, and safety probes
    uri: str | None = None
    error: str | None = None
    version: str | None = None


class Evaluations(RootModel[dict[str, RoleEvaluation]]):
    """Every role's evaluation, by role."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    def as_dicts(self) -> dict[str, dict]:
        """Plain dicts without empty fields, as the gate and the report read them."""
        return {role: e.model_dump(exclude_none=True) for role, e in self.root.items()}


class GateDecision(Contract):
    """The gate's verdict (see ``tuneops.evaluation.gate.decide``), its table and where the report is."""

    passed: bool
    deciding_rule: str
    reasons: list[str]
    checks: list[dict[str, Any]]
    table: list[dict[str, Any]]
    champion_version: str | None
    text: str
    report_uri: str


class Registration(Contract):
    """A registered challenger: the version, whether it already existed, and whether it promotes itself."""

    name: str
    version: str
    reused: bool
    auto_approve: bool
    project: str | None = None


class VariantChoice(Contract):
    """The serving variant of a champion (``merged`` or a quantization) and the report that chose it."""

    model_name: str
    version: str
    variant: str
    report_uri: str | None
    project: str | None = None


# --- model jobs: what a job reads (its input) and where it runs -------------------------------
# Each input says where its job runs: ``compute`` (the ``local`` subprocess or a ``kubernetes`` pod)
# and ``kubernetes`` (the pod's image, GPUs, resources, cache volume, credentials Secret).


class PlannedJob(Contract):
    """A job on the trained candidate that the sweep chose: it runs where its plan's training ran."""

    choice: SweepChoice

    @property
    def compute(self) -> Literal["local", "kubernetes"]:
        return self.choice.plan.compute

    @property
    def kubernetes(self) -> KubernetesCompute:
        return self.choice.plan.recipe.compute.kubernetes


class EvaluateJob(PlannedJob):
    """Score base, candidate and champion (``tuneops.stages.finetune.evaluate_models``)."""


class RegisterJob(PlannedJob):
    """Register a candidate that passed the gate (``tuneops.stages.finetune.register_challenger``);
    ``labels`` (the DAG and run) go on the version."""

    evaluations: Evaluations
    decision: GateDecision
    labels: dict[str, str] = {}


class CompressJob(Contract):
    """Make the champion's merged export and choose its serving variant
    (``tuneops.stages.deploy.choose_variant``), on the compute of the recipe whose eval and
    compression settings apply. ``recipe`` is that recipe resolved (the project's settings applied)
    on the worker, so the job reads no config file; None only for a variant named by hand without one.
    """

    model_name: str
    version: str
    variant: str
    recipe: Recipe | None
    project: str | None
    compute: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesCompute = KubernetesCompute()
