"""``llmops_finetune``: plan, train (one trial or a sweep), evaluate, gate, register, promote.

Each step takes and returns a contract of ``tuneops.contracts``. The plan carries the fully
resolved recipe, trial overrides applied, and every step after planning reads the recipe from
it: a trial is trained, evaluated, gated and registered with the same settings. ``finetune``
runs the steps in order without Airflow (the CLI); the DAG wires the same functions as tasks.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from tuneops.config import ConfigError, Recipe, load_recipe, recipe_hash
from tuneops.config.loading import merge
from tuneops.contracts import (
    DatasetManifest,
    Evaluations,
    GateDecision,
    Plan,
    Registration,
    RoleEvaluation,
    SweepChoice,
    SweepTrial,
    TrainingSummary,
)
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.stages.common import published_key

log = logging.getLogger(__name__)

TRAINER_MODULE = "tuneops.training.train"


def plan_training(
    dataset_uri: str,
    recipe: str | None = None,
    labels: dict[str, str] | None = None,
    settings: Settings | None = None,
    sweep: list | dict | None = None,
    check_recipe: bool = True,
    compute: str | None = None,
    project: str | None = None,
) -> Plan:
    """Resolve project, recipe and dataset into a run plan: content-addressed output URI and an MLflow run.

    The project (``project``, else the one whose dataset the prompt dataset is) gives the recipe
    when ``recipe`` is None, and always the registered model name and safety suite; a dataset of
    another project's dataset is refused. ``recipe`` (a Param) overrides the project's recipe.

    The output URI is a hash of the recipe and the dataset version, so rerunning with the same
    inputs finds the adapter already trained; the MLflow run for that output is reused too.
    The ``sweep`` the run will expand is checked first (``tuneops.config.check_sweep``), so an
    oversized or forbidden sweep creates nothing, and so is a recipe path, which must be shipped
    or in the deployment's recipe folders (``check_recipe_ref``; the CLI, whose user picks any
    file anyway, passes ``check_recipe=False``). ``compute`` overrides the recipe's backend.
    """
    import mlflow

    from tuneops.config import check_recipe_ref, check_sweep
    from tuneops.core.tracking import configure_mlflow
    from tuneops.data.prompts import log_dataset_inputs

    settings = settings or load_settings()
    if recipe is not None and check_recipe:
        check_recipe_ref(recipe, settings.recipe_dirs)
    check_sweep(sweep, settings.max_sweep_trials, settings.allowed_overrides)
    store = ArtifactStore.from_settings(settings)
    dataset_dir = store.fetch_dir(published_key(dataset_uri, store))
    manifest = DatasetManifest.load(dataset_dir)
    owner = _project_for(manifest, project, recipe is None, settings)
    recipe = recipe or owner.recipe  # the project's own recipe is trusted like the project file
    project_overrides = owner.recipe_overrides() if owner else {}
    resolved = load_recipe(recipe, project_overrides)
    check_chat_tokenizer(manifest, resolved, recipe)
    resolved_hash = recipe_hash(resolved)
    train_key = f"{resolved_hash}-{manifest.version}"
    experiment_id = configure_mlflow(settings)
    search = f"tags.`tuneops.train_key` = '{train_key}'"
    if owner:
        search += f" and tags.`tuneops.project` = '{owner.name}'"
    runs = mlflow.search_runs([experiment_id], filter_string=search, output_format="list")
    if runs:
        run_id = runs[0].info.run_id
    else:
        tags = {
            "tuneops.train_key": train_key,
            "tuneops.dataset_version": manifest.version,
            "tuneops.template_id": manifest.template_id,
            "tuneops.recipe_hash": resolved_hash,
            **({"tuneops.project": owner.name} if owner else {}),
            **{f"tuneops.{k}": v for k, v in (labels or {}).items()},
        }
        run_id = (
            mlflow.MlflowClient()
            .create_run(experiment_id, tags=tags, run_name=f"finetune-{train_key}")
            .info.run_id
        )
        with mlflow.start_run(run_id=run_id):
            log_dataset_inputs(
                dataset_dir,
                dataset_uri,
                {"train": "training", "validation": "validation", "test": "evaluation"},
            )
    return Plan(
        project=owner.name if owner else None,
        recipe_ref=recipe,
        recipe=resolved,
        project_overrides=project_overrides,
        dataset_uri=dataset_uri,
        dataset_version=manifest.version,
        template_id=manifest.template_id,
        template_hash=manifest.template_hash,
        output_uri=store.uri(f"candidates/{train_key}"),
        mlflow_run_id=run_id,
        compute=compute or resolved.compute.backend,
    )


def check_chat_tokenizer(manifest: DatasetManifest, recipe: Recipe, ref: str) -> None:
    """A chat-format dataset's prompts are its tokenizer's chat layout: only that model can train on them.
    Raises ConfigError naming the dataset, both models and the fix when ``recipe`` trains another one."""
    if manifest.template_format == "chat" and manifest.tokenizer != recipe.base_model:
        raise ConfigError(
            f"dataset {manifest.dataset} version {manifest.version} is in the chat layout of {manifest.tokenizer} "
            f"(template {manifest.template_id}), but recipe {ref} trains {recipe.base_model}: set the dataset "
            f"config's tokenizer to {recipe.base_model} and build the prompt dataset again, or use a recipe on "
            f"{manifest.tokenizer}"
        )


def _project_for(manifest: DatasetManifest, project: str | None, required: bool, settings: Settings):
    """The project of a run on this prompt dataset: the named one (which must own the dataset), else
    the one project that owns it; None only when not ``required`` and no single project owns it."""
    from tuneops.config import ConfigError, load_dataset_config, load_project, project_for_dataset

    if project:
        owner = load_project(project, settings.project_dirs)
        dataset = load_dataset_config(owner.dataset).name
        if dataset != manifest.dataset:
            raise ConfigError(
                f"project '{owner.name}' trains on dataset '{dataset}', but prompt dataset {manifest.version} "
                f"is of dataset '{manifest.dataset}'; hand it on with its own project"
            )
        return owner
    try:
        return project_for_dataset(manifest.dataset, settings.project_dirs)
    except ConfigError:
        if required:
            raise
        return None


def plan_trials(plan: Plan | dict, sweep: list | dict | None, settings: Settings | None = None) -> list[Plan]:
    """One plan per sweep trial (``tuneops.config.expand_sweep``); without a sweep, ``[plan]``.

    The sweep is bounded and its keys checked (``tuneops.config.check_sweep``) before any run.
    Each trial's plan holds the plan's recipe with the trial's overrides, resolved and validated
    before any compute (a bad key fails here, naming it); it gets its own content-addressed output
    URI and an MLflow child run of the plan's run, both reused on a rerun.
    """
    import mlflow

    from tuneops.config import check_sweep, expand_sweep
    from tuneops.core.tracking import configure_mlflow, flatten

    plan = Plan.model_validate(plan)
    settings = settings or load_settings()
    check_sweep(sweep, settings.max_sweep_trials, settings.allowed_overrides)
    overrides = expand_sweep(sweep)
    if overrides == [{}]:
        return [plan.model_copy(update={"trial": 0, "overrides": {}})]
    store = ArtifactStore.from_settings(settings)
    experiment_id = configure_mlflow(settings)
    client = mlflow.MlflowClient()
    trials = []
    for number, override in enumerate(overrides):
        resolved = load_recipe(plan.recipe_ref, merge(plan.project_overrides, override))
        resolved_hash = recipe_hash(resolved)
        train_key = f"{resolved_hash}-{plan.dataset_version}"
        found = mlflow.search_runs(
            [experiment_id],
            filter_string=f"tags.`tuneops.train_key` = '{train_key}' and tags.`mlflow.parentRunId` = '{plan.mlflow_run_id}'",
            output_format="list",
        )
        run_id = found[0].info.run_id if found else None
        if run_id is None:
            tags = {
                "mlflow.parentRunId": plan.mlflow_run_id,
                "tuneops.train_key": train_key,
                "tuneops.trial": str(number),
                "tuneops.dataset_version": plan.dataset_version,
                **{f"tuneops.sweep.{k}": str(v) for k, v in flatten(override).items()},
            }
            run_id = client.create_run(
                experiment_id, tags=tags, run_name=f"trial-{number}-{train_key}"
            ).info.run_id
        trials.append(
            plan.model_copy(
                update={
                    "trial": number,
                    "overrides": override,
                    "recipe": resolved,
                    "output_uri": store.uri(f"candidates/{train_key}"),
                    "mlflow_run_id": run_id,
                }
            )
        )
    return trials


def select_trial(
    plan: Plan | dict,
    trials: list[Plan | dict],
    summaries: list[TrainingSummary | dict],
    settings: Settings | None = None,
) -> SweepChoice:
    """The trial with the lowest validation loss, and the sweep table logged to the plan's MLflow run.

    The table has each trial's overrides, eval loss, tokens/s, train seconds and estimated
    GPU-hours (train time x GPUs of the trial's Kubernetes compute; 0 on the local backend).
    """
    import mlflow

    from tuneops.core.tracking import configure_mlflow

    plan = Plan.model_validate(plan)
    trials = [Plan.model_validate(t) for t in trials]
    by_output = {s.output_uri: s for s in (TrainingSummary.model_validate(s) for s in summaries)}
    missing = [t.trial for t in trials if t.output_uri not in by_output]
    if missing:
        raise ValueError(f"trial(s) {missing} returned no training summary; see their task logs")
    table = []
    for trial in trials:
        summary = by_output[trial.output_uri]
        gpus = trial.recipe.compute.kubernetes.gpus if plan.compute == "kubernetes" else 0
        table.append(
            SweepTrial(
                trial=trial.trial,
                overrides=trial.overrides,
                eval_loss=summary.eval_loss,
                tokens_per_s=summary.tokens_per_s,
                train_seconds=summary.train_seconds,
                gpu_hours=round(summary.train_seconds * gpus / 3600, 4),
            )
        )
    finite = [row for row in table if math.isfinite(row.eval_loss)]
    if not finite:
        raise ValueError("no trial has a finite validation loss; nothing to choose")
    best = min(finite, key=lambda row: (row.eval_loss, row.trial))
    winner = next(t for t in trials if t.trial == best.trial)
    if len(trials) > 1:
        configure_mlflow(settings or load_settings())
        with mlflow.start_run(run_id=plan.mlflow_run_id):
            mlflow.log_dict(
                {"winner": best.trial, "trials": [row.model_dump(mode="json") for row in table]},
                "sweep/table.json",
            )
            mlflow.set_tag("tuneops.sweep_winner", str(best.trial))
        log.info(
            "sweep: trial %d wins with eval loss %.4f\n%s", best.trial, best.eval_loss, format_sweep(table)
        )
    return SweepChoice(plan=winner, summary=by_output[winner.output_uri], table=table)


def format_sweep(table: list[SweepTrial]) -> str:
    lines = [f"{'trial':>5}  {'eval_loss':>9}  {'tokens/s':>9}  {'seconds':>8}  {'GPU-h':>7}  overrides"]
    for row in table:
        lines.append(
            f"{row.trial:>5}  {row.eval_loss:>9.4f}  {row.tokens_per_s:>9.1f}  {row.train_seconds:>8.1f}  "
            f"{row.gpu_hours:>7.4f}  {json.dumps(row.overrides, sort_keys=True)}"
        )
    return "\n".join(lines)


def train_command(plan: Plan | dict) -> list[str]:
    """The trainer command line; the local subprocess and the Kubernetes pod run exactly this.

    ``--recipe-hash`` makes the trainer refuse a recipe that resolves differently from the plan's
    (the file changed after planning), so what is trained is what the later steps read.
    """
    from tuneops.core.tracking import flatten

    plan = Plan.model_validate(plan)
    # The project's settings too (outside the recipe hash), so the adapter's recipe.yaml and the
    # run's params are the recipe every later step reads.
    overrides = merge(plan.project_overrides, plan.overrides)
    sets = [f"{key}={json.dumps(value)}" for key, value in flatten(overrides).items()]
    return [
        "python",
        "-m",
        TRAINER_MODULE,
        "--recipe",
        plan.recipe_ref,
        "--dataset",
        plan.dataset_uri,
        "--output",
        plan.output_uri,
        "--run-id",
        plan.mlflow_run_id,
        "--recipe-hash",
        plan.recipe_hash,
        *[arg for item in sets for arg in ("--set", item)],
    ]


def pod_train_command(plan: Plan | dict) -> list[str]:
    """The trainer command a pod runs: ``train_command``, under ``torchrun`` (one process per GPU, DDP
    over NCCL) when the recipe's ``compute.kubernetes.gpus`` asks for more than one GPU."""
    plan = Plan.model_validate(plan)
    command = train_command(plan)
    gpus = plan.recipe.compute.kubernetes.gpus
    if gpus <= 1:
        return command
    return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", *command[1:]]


def train_locally(plan: Plan | dict, on_start=None, settings: Settings | None = None) -> TrainingSummary:
    """Run the trainer as a subprocess with this interpreter, tied to this process; returns its summary.

    See ``tuneops.training.process``: the trainer dies with this process, and ``on_start`` gets the
    ``TrainerProcess`` before it starts (an operator keeps it to stop the trainer from ``on_kill``).
    """
    from tuneops.training.process import TrainerProcess

    # The trainer has no Airflow task context: it gets the connections' credentials as variables.
    settings = settings or load_settings()
    trainer = TrainerProcess([sys.executable, *train_command(plan)[1:]], env=settings.child_env())
    if on_start is not None:
        on_start(trainer)
    return TrainingSummary.model_validate_json(trainer.run().strip().splitlines()[-1])


def _base_ref(plan: Plan, settings: Settings):
    from tuneops.evaluation.evaluate import ModelRef
    from tuneops.models.base_model import base_fingerprint, resolve_base_model

    path = resolve_base_model(plan.recipe.base_model, ArtifactStore.from_settings(settings))
    return ModelRef("base", f"base:{base_fingerprint(path)}", path)


def candidate_fingerprint(summary: TrainingSummary, base_fingerprint: str) -> str:
    from tuneops.registry.registry import export_fingerprint

    return export_fingerprint(base_fingerprint, summary.adapter_sha256)


def evaluate_models(
    plan: Plan | dict, summary: TrainingSummary | dict, settings: Settings | None = None
) -> Evaluations:
    """Score base, candidate and the current champion on the same examples and safety probes.

    This is the evaluation job's work (``python -m tuneops.jobs evaluate``): the base model is loaded
    once, on this process's accelerator if it has one, and the candidate's and an adapter champion's
    adapters are swapped onto it (``tuneops.evaluation.evaluate.SharedBase``). Each role holds
    ``metrics``, ``fingerprint``, ``n`` and ``uri``; a role whose evaluation failed (empty split,
    failed generation, NaN) holds ``error`` instead, which fails the gate.
    """
    import mlflow

    from tuneops.config import load_safety_suite
    from tuneops.core.lineage import FINGERPRINT_TAG
    from tuneops.core.tracking import configure_mlflow
    from tuneops.evaluation.evaluate import EvaluationError, ModelRef, SharedBase, evaluate_model
    from tuneops.registry.registry import CHAMPION, alias_version

    plan, summary = Plan.model_validate(plan), TrainingSummary.model_validate(summary)
    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    suite = load_safety_suite(plan.recipe.eval.safety_suite)
    dataset_dir = store.fetch_dir(published_key(plan.dataset_uri, store))
    base = _base_ref(plan, settings)
    adapter_dir = store.fetch_dir(published_key(plan.output_uri, store)) / "adapter"
    refs = [
        base,
        ModelRef("candidate", candidate_fingerprint(summary, base.fingerprint), base.path, str(adapter_dir)),
    ]
    champ = alias_version(plan.model_name, CHAMPION, settings)
    out: dict[str, RoleEvaluation] = {}
    if champ is not None:
        fp = champ.tags.get(FINGERPRINT_TAG, f"registry:{plan.model_name}/{champ.version}")
        try:
            refs.append(champion_ref(plan.model_name, str(champ.version), fp, base, settings))
        except Exception as exc:  # the comparison cannot be made: fail closed, say why
            out["champion"] = RoleEvaluation(
                error=f"could not load champion v{champ.version}: {exc}", fingerprint=fp
            )
    shared = SharedBase(base.path)
    for ref in refs:
        try:
            result = evaluate_model(
                ref, dataset_dir, plan.dataset_version, plan.recipe.eval, suite, store, loader=shared.loader
            )
        except EvaluationError as exc:
            log.error("%s", exc)
            out[ref.role] = RoleEvaluation(error=str(exc), fingerprint=ref.fingerprint)
            continue
        out[ref.role] = RoleEvaluation(**{k: result[k] for k in ("metrics", "fingerprint", "n", "uri")})
    if champ is not None:
        out["champion"] = out["champion"].model_copy(update={"version": str(champ.version)})
    configure_mlflow(settings)
    with mlflow.start_run(run_id=plan.mlflow_run_id):
        for role, res in out.items():
            if res.metrics is not None:
                mlflow.log_metrics({f"{role}.{k}": v for k, v in res.metrics.items()})
    return Evaluations(out)


def champion_ref(name: str, version: str, fingerprint: str, base, settings: Settings):
    """The champion as evaluation loads it: its adapter on the shared base when it was trained on the
    same base, else a whole model (its weights, or its adapter's merged export)."""
    from tuneops.evaluation.evaluate import ModelRef
    from tuneops.registry.registry import load_version_files

    files = load_version_files(name, version, settings, export=False)
    if files.base is not None and f"base:{files.base['fingerprint']}" == base.fingerprint:
        return ModelRef("champion", fingerprint, base.path, str(files.adapter_path))
    if files.base is not None:
        files = load_version_files(name, version, settings)
    return ModelRef("champion", fingerprint, str(files.path))


def run_gate(
    plan: Plan | dict, evaluations: Evaluations | dict, settings: Settings | None = None
) -> GateDecision:
    """Apply the plan's gate rules; publish decision + HTML report and log both to MLflow.

    The decision is ``tuneops.evaluation.gate.decide``'s, plus ``text`` (the table for logs),
    ``report_uri`` and ``champion_version``.
    """
    import mlflow

    from tuneops.core.tracking import configure_mlflow
    from tuneops.evaluation.evaluate import read_outputs
    from tuneops.evaluation.gate import decide, format_table
    from tuneops.evaluation.report import render_report

    plan, evaluations = Plan.model_validate(plan), Evaluations.model_validate(evaluations)
    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    roles = evaluations.as_dicts()
    decided = decide(plan.recipe.gate, roles)
    champion = evaluations.root.get("champion")
    decided["champion_version"] = champion.version if champion else None
    decided["text"] = format_table(decided)
    log.info("gate decision:\n%s", decided["text"])
    outputs = {role: read_outputs(e["uri"], store) for role, e in roles.items() if e.get("uri")}
    candidate = Path(plan.output_uri).name
    title = f"Gate for {plan.model_name}: candidate {candidate} on dataset {plan.dataset_version}"
    key = f"gates/{candidate}-{_evals_key(evaluations)}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "report.html").write_text(render_report(decided, roles, outputs, title))
        decision = GateDecision(**decided, report_uri=store.uri(key) + "/report.html")
        (Path(tmp) / "decision.json").write_text(decision.model_dump_json(indent=2))
        if store.exists(key):
            store.remove_dir(key)  # same inputs, same decision; the report is rebuilt with this code
        store.publish_dir(Path(tmp), key)
        configure_mlflow(settings)
        with mlflow.start_run(run_id=plan.mlflow_run_id):
            mlflow.log_artifacts(tmp, artifact_path="gate")
            mlflow.set_tag("tuneops.gate", "passed" if decision.passed else "failed")
            mlflow.set_tag("tuneops.gate_deciding_rule", decision.deciding_rule[:500])
    log.info("gate report: %s", decision.report_uri)
    return decision


def _evals_key(evaluations: Evaluations) -> str:
    from tuneops.core.hashing import hash_json

    return hash_json({role: e.fingerprint for role, e in evaluations.root.items()})[:12]


def register_challenger(
    plan: Plan | dict,
    summary: TrainingSummary | dict,
    evaluations: Evaluations | dict,
    decision: GateDecision | dict,
    labels: dict[str, str],
    settings: Settings | None = None,
) -> Registration:
    """Register a candidate that passed the gate with lineage tags and a model card; alias it ``challenger``.

    The version is the adapter plus a reference to the base model (``tuneops.registry.registry``); this
    is the registration job's work (``python -m tuneops.jobs register``). Raises ValueError for a
    candidate that failed the gate.
    """
    from tuneops.core.hashing import hash_dir
    from tuneops.core.lineage import Lineage
    from tuneops.core.templates import PromptTemplate
    from tuneops.models.base_model import base_reference, resolve_base_model
    from tuneops.registry.model_card import render_model_card
    from tuneops.registry.registry import git_commit, log_base_model, register_candidate, set_challenger

    plan, summary = Plan.model_validate(plan), TrainingSummary.model_validate(summary)
    evaluations, decision = Evaluations.model_validate(evaluations), GateDecision.model_validate(decision)
    if not decision.passed:
        raise ValueError(
            "refusing to register a candidate that failed the gate: " + "; ".join(decision.reasons)
        )
    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    base_ref = base_reference(plan.recipe.base_model, store)
    # Logged to MLflow once per base, so any MLflow client loads the version without our store.
    base = log_base_model(base_ref, resolve_base_model(plan.recipe.base_model, store), settings)
    dataset_dir = store.fetch_dir(published_key(plan.dataset_uri, store))
    manifest = DatasetManifest.load(dataset_dir)
    candidate = evaluations.root["candidate"]
    lineage = Lineage(
        dataset_version=plan.dataset_version,
        dataset_digest=hash_dir(dataset_dir)[:16],
        dataset_uri=plan.dataset_uri,
        template_id=plan.template_id,
        template_hash=plan.template_hash,
        recipe_hash=summary.recipe_hash,
        base_model=plan.recipe.base_model,
        git_commit=git_commit(),
        gate_report=decision.report_uri,
        labels=labels,
    )
    tags: dict[str, Any] = {
        **lineage.tags(),
        **{
            f"tuneops.gate.{k}": round(v, 6)
            for k, v in (candidate.metrics or {}).items()
            if k in _gated(decision)
        },
        "tuneops.gate.decision": decision.deciding_rule[:500],
        **({"tuneops.project": plan.project} if plan.project else {}),
    }
    card = render_model_card(
        name=plan.model_name,
        plan=plan,
        summary=summary,
        manifest=manifest,
        decision=decision,
        lineage=lineage,
    )
    registered = register_candidate(
        name=plan.model_name,
        base=base,
        adapter_dir=store.fetch_dir(published_key(plan.output_uri, store)) / "adapter",
        fingerprint=candidate.fingerprint,
        run_id=plan.mlflow_run_id,
        template=PromptTemplate.model_validate(manifest.template),
        tags=tags,
        max_new_tokens=plan.recipe.eval.max_new_tokens,
        decoding=plan.recipe.eval.decoding,
        model_card=card,
        settings=settings,
    )
    set_challenger(registered["name"], registered["version"], settings)
    return Registration(**registered, auto_approve=plan.recipe.registry.auto_approve, project=plan.project)


def _gated(decision: GateDecision) -> set[str]:
    return {row["metric"] for row in decision.table if row["gated"]} | {
        row["metric"] for row in decision.table if row["metric"].startswith(("test.", "golden.", "safety."))
    }


def promote_challenger(
    registered: Registration | dict,
    approval: dict | None,
    labels: dict[str, str],
    settings: Settings | None = None,
) -> dict:
    """Move ``champion`` to the registered version: approved by a reviewer (``approval`` is the
    ApprovalOperator's result) or by the recipe's ``auto_approve``. Returns the promotion dict."""
    from tuneops.registry.registry import promote

    registered = Registration.model_validate(registered)
    settings = settings or load_settings()
    if approval is not None:
        by = (approval.get("responded_by_user") or {}).get("name") or "unknown reviewer"
        reason = (approval.get("params_input") or {}).get("reason") or ""
    elif registered.auto_approve:
        by, reason = "auto_approve (recipe)", "registry.auto_approve is true in the recipe"
    else:
        raise ValueError(
            f"{registered.name} v{registered.version} has no approval: approve it in the Airflow UI "
            "(Required actions) or set registry.auto_approve in the recipe"
        )
    owner = f"{labels.get('dag_id', 'cli')}/{labels.get('dag_run_id', '-')}"
    return promote(registered.name, registered.version, by, settings, reason=reason, owner=owner)


def record_rejection(
    registered: Registration | dict, approval: dict, settings: Settings | None = None
) -> dict:
    """Record a reviewer's rejection (who, when, why) on the version and take ``challenger`` off it."""
    from tuneops.registry.registry import reject

    registered = Registration.model_validate(registered)
    settings = settings or load_settings()
    by = (approval.get("responded_by_user") or {}).get("name") or "timeout (default: Reject)"
    reason = (approval.get("params_input") or {}).get("reason") or ""
    return reject(registered.name, registered.version, by, reason, settings)


def finetune(
    dataset_uri: str,
    recipe: str | None = None,
    labels: dict[str, str] | None = None,
    check_recipe: bool = True,
    project: str | None = None,
    overrides: dict | None = None,
) -> dict:
    """The whole flow in this process, on the local backend (what ``tuneops finetune`` runs).

    ``overrides`` (dotted recipe keys, like ``--set``) make a one-trial sweep, checked like one.
    Returns ``{"plan", "decision", "registered", "promoted"}`` (the last two None when the gate
    failed or the version waits for a reviewer).
    """
    settings = load_settings()
    labels = labels or {}
    sweep = [overrides] if overrides else None
    plan = plan_training(
        dataset_uri, recipe, labels, settings, sweep=sweep, check_recipe=check_recipe, project=project
    )
    (trial,) = plan_trials(plan, sweep, settings)
    summary = train_locally(trial, settings=settings)
    evaluations = evaluate_models(trial, summary, settings)
    decision = run_gate(trial, evaluations, settings)
    registered = promoted = None
    if decision.passed:
        registered = register_challenger(trial, summary, evaluations, decision, labels, settings)
        if registered.auto_approve:
            promoted = promote_challenger(registered, None, labels, settings)
    return {"plan": trial, "decision": decision, "registered": registered, "promoted": promoted}


def projects_to_retrain(names: list[str] | None = None, settings: Settings | None = None) -> list[str]:
    """Of ``names`` (default: every project), those whose dataset has a published prompt dataset.

    An unknown name is a ConfigError naming it.
    """
    from tuneops.config import load_dataset_config, load_project, loadable_projects

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    dirs = settings.project_dirs
    projects = [load_project(name, dirs) for name in names] if names else loadable_projects(dirs)
    chosen = []
    for project in projects:
        if store.list_keys(f"datasets/{load_dataset_config(project.dataset).name}"):
            chosen.append(project.name)
    return chosen
