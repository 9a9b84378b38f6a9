"""The pipeline's steps as plain functions: what each DAG task (and the CLI) calls.

Each step takes small JSON-able inputs (URIs, ids, names) and returns a small dict, so
Airflow passes them through XCom while the data stays in the artifact store.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

from tuneops.config import load_dataset_config, load_recipe, load_template
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import PromptTemplate

log = logging.getLogger(__name__)


def _store(settings: Settings) -> ArtifactStore:
    return ArtifactStore.from_settings(settings)


def validate(batch_uri: str, dataset: str, settings: Settings | None = None) -> dict:
    """Validate a landed batch (see ``tuneops.data.validation.validate_batch``) and log its reports to MLflow.

    Accepted and rejected batches alike leave an MLflow run (tag ``tuneops.kind=validation``)
    holding the GE result, the summary and, for accepted ones, the EDA report.
    """
    from tuneops.data.validation import BatchRejected, validate_batch

    if not batch_uri or not str(batch_uri).strip():
        raise ValueError(
            "batch_uri is empty: pass the file or folder of the landed batch (local path or s3://...)"
        )
    settings = settings or load_settings()
    store = _store(settings)
    config = load_dataset_config(dataset)
    try:
        result = validate_batch(batch_uri, config, store, settings.cache_dir, settings.landing_roots)
    except BatchRejected as exc:
        if exc.report_key:
            _log_validation(settings, store, exc.report_key, config.name, "rejected")
        raise
    if not result["reused"]:
        result["mlflow_run_id"] = _log_validation(settings, store, result["key"], config.name, "accepted")
    return result


def _log_validation(settings: Settings, store: ArtifactStore, key: str, dataset: str, outcome: str) -> str:
    import mlflow

    from tuneops.core.tracking import configure_mlflow

    configure_mlflow(settings)
    folder = store.fetch_dir(key)
    tags = {
        "tuneops.kind": "validation",
        "tuneops.dataset": dataset,
        "tuneops.outcome": outcome,
        "tuneops.batch_uri": store.uri(key),
    }
    with mlflow.start_run(run_name=f"validate-{dataset}-{Path(key).name}", tags=tags) as run:
        for name in ("validation.json", "summary.md", "meta.json"):
            if (folder / name).is_file():
                mlflow.log_artifact(str(folder / name), artifact_path="validation")
        if (folder / "eda").is_dir():
            mlflow.log_artifacts(str(folder / "eda"), artifact_path="eda")
    return run.info.run_id


def build_prompts(validated_uris: list[str], dataset: str, settings: Settings | None = None) -> dict:
    """Build the prompt dataset from these validated batches and the ones the config accumulates.

    See ``tuneops.data.prompts``. A new version is logged to MLflow (tag ``tuneops.kind=prompt_dataset``)
    with its manifest and each split as an ``mlflow.data`` input whose digest is the version.
    """
    from tuneops.data.prompts import build_prompt_dataset, select_batches

    settings = settings or load_settings()
    store = _store(settings)
    config = load_dataset_config(dataset)
    keys = select_batches([_key_of(uri, store) for uri in validated_uris], config, store)
    result = build_prompt_dataset(keys, config, load_template(config.template), store, settings.cache_dir)
    if not result["reused"]:
        result["mlflow_run_id"] = _log_prompt_dataset(settings, store, result)
    return result


def _log_prompt_dataset(settings: Settings, store: ArtifactStore, result: dict) -> str:
    import mlflow

    from tuneops.core.tracking import configure_mlflow
    from tuneops.data.prompts import log_dataset_inputs

    configure_mlflow(settings)
    folder = store.fetch_dir(result["key"])
    tags = {
        "tuneops.kind": "prompt_dataset",
        "tuneops.dataset": result["dataset"],
        "tuneops.dataset_version": result["version"],
        "tuneops.dataset_uri": result["uri"],
        "tuneops.template_id": result["template_id"],
        "tuneops.template_hash": result["template_hash"],
    }
    with mlflow.start_run(run_name=f"prompts-{result['dataset']}-{result['version']}", tags=tags) as run:
        mlflow.log_artifact(str(folder / "manifest.json"), artifact_path="dataset")
        mlflow.log_metrics({f"rows.{k}": v for k, v in result["counts"].items()})
        mlflow.log_metrics({f"dropped.{k}": v for k, v in result["dropped"].items()})
        log_dataset_inputs(folder, result["uri"], {split: split for split in result["counts"]})
    return run.info.run_id


def _key_of(uri: str, store: ArtifactStore) -> str:
    key = store.key_of(uri)
    if not store.exists(key):
        raise ValueError(f"{uri} holds no published artifact; run the step that produces it first")
    return key


def plan_training(
    dataset_uri: str,
    recipe: str,
    labels: dict[str, str] | None = None,
    settings: Settings | None = None,
    sweep: list | dict | None = None,
    check_recipe: bool = True,
) -> dict:
    """Resolve recipe and dataset into a run plan: content-addressed output URI and an MLflow run.

    The output URI is a hash of the recipe and the dataset version, so rerunning with the same
    inputs finds the adapter already trained; the MLflow run for that output is reused too.
    The ``sweep`` the run will expand is checked first (``tuneops.config.check_sweep``), so an
    oversized or forbidden sweep creates nothing, and so is a recipe path, which must be shipped
    or in the deployment's recipe folders (``check_recipe_ref``; the CLI, whose user picks any
    file anyway, passes ``check_recipe=False``).
    """
    import mlflow

    from tuneops.config import check_recipe_ref, check_sweep
    from tuneops.core.tracking import configure_mlflow
    from tuneops.data.prompts import log_dataset_inputs
    from tuneops.training.train import recipe_hash

    settings = settings or load_settings()
    if check_recipe:
        check_recipe_ref(recipe, settings.recipe_dirs)
    check_sweep(sweep, settings.max_sweep_trials, settings.allowed_overrides)
    store = _store(settings)
    resolved = load_recipe(recipe)
    dataset_dir = store.fetch_dir(_key_of(dataset_uri, store))
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    train_key = f"{recipe_hash(resolved)}-{manifest['version']}"
    output_uri = store.uri(f"candidates/{train_key}")
    experiment_id = configure_mlflow(settings)
    runs = mlflow.search_runs(
        [experiment_id], filter_string=f"tags.`tuneops.train_key` = '{train_key}'", output_format="list"
    )
    if runs:
        run_id = runs[0].info.run_id
    else:
        tags = {
            "tuneops.train_key": train_key,
            "tuneops.dataset_version": manifest["version"],
            "tuneops.template_id": manifest["template_id"],
            "tuneops.recipe_hash": recipe_hash(resolved),
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
    return {
        "recipe": recipe,
        "dataset_uri": dataset_uri,
        "dataset_version": manifest["version"],
        "template_id": manifest["template_id"],
        "template_hash": manifest["template_hash"],
        "output_uri": output_uri,
        "mlflow_run_id": run_id,
        "model_name": resolved.registry.model_name,
        "compute": resolved.compute.backend,
    }


def plan_trials(plan: dict, sweep: list | dict | None, settings: Settings | None = None) -> list[dict]:
    """One plan per sweep trial (``tuneops.config.expand_sweep``); without a sweep, ``[plan]``.

    The sweep is bounded and its keys checked (``tuneops.config.check_sweep``) before any run.

    Each trial's recipe is the plan's recipe with the trial's overrides, validated before
    any compute (a bad key fails here, naming it); it gets its own content-addressed output
    URI and an MLflow child run of the plan's run, both reused on a rerun.
    """
    import mlflow

    from tuneops.config import check_sweep, expand_sweep
    from tuneops.core.tracking import configure_mlflow, flatten
    from tuneops.training.train import recipe_hash

    settings = settings or load_settings()
    check_sweep(sweep, settings.max_sweep_trials, settings.allowed_overrides)
    overrides = expand_sweep(sweep)
    if overrides == [{}]:
        return [{**plan, "trial": 0, "overrides": {}}]
    store = _store(settings)
    experiment_id = configure_mlflow(settings)
    client = mlflow.MlflowClient()
    trials = []
    for number, override in enumerate(overrides):
        resolved = load_recipe(plan["recipe"], override)
        train_key = f"{recipe_hash(resolved)}-{plan['dataset_version']}"
        found = mlflow.search_runs(
            [experiment_id],
            filter_string=f"tags.`tuneops.train_key` = '{train_key}' and tags.`mlflow.parentRunId` = '{plan['mlflow_run_id']}'",
            output_format="list",
        )
        run_id = found[0].info.run_id if found else None
        if run_id is None:
            tags = {
                "mlflow.parentRunId": plan["mlflow_run_id"],
                "tuneops.train_key": train_key,
                "tuneops.trial": str(number),
                "tuneops.dataset_version": plan["dataset_version"],
                **{f"tuneops.sweep.{k}": str(v) for k, v in flatten(override).items()},
            }
            run_id = client.create_run(
                experiment_id, tags=tags, run_name=f"trial-{number}-{train_key}"
            ).info.run_id
        trials.append(
            {
                **plan,
                "trial": number,
                "overrides": override,
                "output_uri": store.uri(f"candidates/{train_key}"),
                "mlflow_run_id": run_id,
            }
        )
    return trials


def select_trial(
    plan: dict, trials: list[dict], summaries: list[dict], settings: Settings | None = None
) -> dict:
    """The trial with the lowest validation loss, and the sweep table logged to the plan's MLflow run.

    Returns ``{"plan", "summary", "table"}``; the table has each trial's overrides, eval
    loss, tokens/s, train seconds and estimated GPU-hours (train time x GPUs of the recipe's
    Kubernetes compute; 0 on the local backend).
    """
    import math

    import mlflow

    from tuneops.core.tracking import configure_mlflow

    by_output = {s["output_uri"]: s for s in summaries}
    missing = [t["trial"] for t in trials if t["output_uri"] not in by_output]
    if missing:
        raise ValueError(f"trial(s) {missing} returned no training summary; see their task logs")
    table = []
    for trial in trials:
        summary = by_output[trial["output_uri"]]
        recipe = load_recipe(trial["recipe"], trial["overrides"])
        gpus = recipe.compute.kubernetes.gpus if plan["compute"] == "kubernetes" else 0
        table.append(
            {
                "trial": trial["trial"],
                "overrides": trial["overrides"],
                "eval_loss": summary["eval_loss"],
                "tokens_per_s": summary["tokens_per_s"],
                "train_seconds": summary["train_seconds"],
                "gpu_hours": round(summary["train_seconds"] * gpus / 3600, 4),
            }
        )
    finite = [row for row in table if math.isfinite(row["eval_loss"])]
    if not finite:
        raise ValueError("no trial has a finite validation loss; nothing to choose")
    best = min(finite, key=lambda row: (row["eval_loss"], row["trial"]))
    winner = trials[best["trial"]]
    if len(trials) > 1:
        configure_mlflow(settings or load_settings())
        with mlflow.start_run(run_id=plan["mlflow_run_id"]):
            mlflow.log_dict({"winner": best["trial"], "trials": table}, "sweep/table.json")
            mlflow.set_tag("tuneops.sweep_winner", str(best["trial"]))
        log.info(
            "sweep: trial %d wins with eval loss %.4f\n%s",
            best["trial"],
            best["eval_loss"],
            format_sweep(table),
        )
    return {"plan": winner, "summary": by_output[winner["output_uri"]], "table": table}


def format_sweep(table: list[dict]) -> str:
    lines = [f"{'trial':>5}  {'eval_loss':>9}  {'tokens/s':>9}  {'seconds':>8}  {'GPU-h':>7}  overrides"]
    for row in table:
        lines.append(
            f"{row['trial']:>5}  {row['eval_loss']:>9.4f}  {row['tokens_per_s']:>9.1f}  {row['train_seconds']:>8.1f}  "
            f"{row['gpu_hours']:>7.4f}  {json.dumps(row['overrides'], sort_keys=True)}"
        )
    return "\n".join(lines)


def train_command(plan: dict) -> list[str]:
    """The trainer command line; the local subprocess and the Kubernetes pod run exactly this."""
    from tuneops.core.tracking import flatten

    sets = [f"{key}={json.dumps(value)}" for key, value in flatten(plan.get("overrides") or {}).items()]
    return [
        "python",
        "-m",
        "tuneops.training.train",
        "--recipe",
        plan["recipe"],
        "--dataset",
        plan["dataset_uri"],
        "--output",
        plan["output_uri"],
        "--run-id",
        plan["mlflow_run_id"],
        *[arg for item in sets for arg in ("--set", item)],
    ]


def train_locally(plan: dict, on_start=None) -> dict:
    """Run the trainer as a subprocess with this interpreter, tied to this process; returns its summary.

    See ``tuneops.training.process``: the trainer dies with this process, and ``on_start`` gets the
    ``TrainerProcess`` before it starts (an operator keeps it to stop the trainer from ``on_kill``).
    """
    from tuneops.core.connections import export_connections
    from tuneops.training.process import TrainerProcess

    # The trainer has no Airflow task context: it gets the connections' credentials as variables.
    export_connections()
    trainer = TrainerProcess([sys.executable, *train_command(plan)[1:]])
    if on_start is not None:
        on_start(trainer)
    return json.loads(trainer.run().strip().splitlines()[-1])


def _base_ref(recipe, settings: Settings):
    from tuneops.core.hashing import hash_dir
    from tuneops.evaluation.evaluate import ModelRef
    from tuneops.models.base_model import resolve_base_model

    path = resolve_base_model(recipe.base_model, _store(settings))
    fingerprint = hash_dir(Path(path)) if Path(path).is_dir() else recipe.base_model
    return ModelRef("base", f"base:{fingerprint}", path)


def candidate_fingerprint(summary: dict, base_fingerprint: str) -> str:
    from tuneops.core.hashing import hash_json

    return hash_json({"base": base_fingerprint, "adapter": summary["adapter_sha256"]})


def evaluate_models(plan: dict, summary: dict, settings: Settings | None = None) -> dict:
    """Score base, candidate and the current champion on the same examples and safety probes.

    Returns ``{role: {"metrics", "fingerprint", "n", "uri"}}``; a role whose evaluation failed
    (empty split, failed generation, NaN) holds ``{"error": ...}`` instead, which fails the gate.
    """
    import mlflow

    from tuneops.config import load_safety_suite
    from tuneops.evaluation.evaluate import EvaluationError, ModelRef, evaluate_model
    from tuneops.registry.registry import CHAMPION, FINGERPRINT_TAG, alias_version, download_version

    settings = settings or load_settings()
    store = _store(settings)
    recipe = load_recipe(plan["recipe"])
    suite = load_safety_suite(recipe.eval.safety_suite)
    dataset_dir = store.fetch_dir(_key_of(plan["dataset_uri"], store))
    base = _base_ref(recipe, settings)
    adapter_dir = store.fetch_dir(_key_of(plan["output_uri"], store)) / "adapter"
    refs = [
        base,
        ModelRef("candidate", candidate_fingerprint(summary, base.fingerprint), base.path, str(adapter_dir)),
    ]
    champ = alias_version(plan["model_name"], CHAMPION, settings)
    out: dict[str, dict] = {}
    if champ is not None:
        fp = champ.tags.get(FINGERPRINT_TAG, f"registry:{plan['model_name']}/{champ.version}")
        try:
            path = str(download_version(plan["model_name"], champ.version, settings))
            refs.append(ModelRef("champion", fp, path))
        except Exception as exc:  # the comparison cannot be made: fail closed, say why
            out["champion"] = {"error": f"could not load champion v{champ.version}: {exc}", "fingerprint": fp}
    for ref in refs:
        try:
            result = evaluate_model(ref, dataset_dir, plan["dataset_version"], recipe.eval, suite, store)
        except EvaluationError as exc:
            log.error("%s", exc)
            out[ref.role] = {"error": str(exc), "fingerprint": ref.fingerprint}
            continue
        out[ref.role] = {k: result[k] for k in ("metrics", "fingerprint", "n", "uri")}
    if champ is not None:
        out["champion"]["version"] = str(champ.version)
    with mlflow.start_run(run_id=plan["mlflow_run_id"]):
        for role, res in out.items():
            if "metrics" in res:
                mlflow.log_metrics({f"{role}.{k}": v for k, v in res["metrics"].items()})
    return out


def run_gate(plan: dict, evaluations: dict, settings: Settings | None = None) -> dict:
    """Apply the recipe's gate rules; publish decision + HTML report and log both to MLflow.

    Returns the decision (see ``tuneops.evaluation.gate.decide``) plus ``text`` (the table for logs),
    ``report_uri`` and ``champion_version``.
    """
    import mlflow

    from tuneops.evaluation.evaluate import read_outputs
    from tuneops.evaluation.gate import decide, format_table
    from tuneops.evaluation.report import render_report

    settings = settings or load_settings()
    store = _store(settings)
    recipe = load_recipe(plan["recipe"])
    decision = decide(recipe.gate, evaluations)
    champion = evaluations.get("champion")
    decision["champion_version"] = champion.get("version") if champion else None
    decision["text"] = format_table(decision)
    log.info("gate decision:\n%s", decision["text"])
    outputs = {role: read_outputs(e["uri"], store) for role, e in evaluations.items() if e.get("uri")}
    title = f"Gate for {plan['model_name']}: candidate {Path(plan['output_uri']).name} on dataset {plan['dataset_version']}"
    key = f"gates/{Path(plan['output_uri']).name}-{_evals_key(evaluations)}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "report.html").write_text(render_report(decision, evaluations, outputs, title))
        decision["report_uri"] = store.uri(key) + "/report.html"
        (Path(tmp) / "decision.json").write_text(json.dumps(decision, indent=2, sort_keys=True, default=str))
        if store.exists(key):
            store.remove_dir(key)  # same inputs, same decision; the report is rebuilt with this code
        store.publish_dir(Path(tmp), key)
        with mlflow.start_run(run_id=plan["mlflow_run_id"]):
            mlflow.log_artifacts(tmp, artifact_path="gate")
            mlflow.set_tag("tuneops.gate", "passed" if decision["passed"] else "failed")
            mlflow.set_tag("tuneops.gate_deciding_rule", decision["deciding_rule"][:500])
    log.info("gate report: %s", decision["report_uri"])
    return decision


def _evals_key(evaluations: dict) -> str:
    from tuneops.core.hashing import hash_json

    return hash_json({role: e.get("fingerprint") for role, e in evaluations.items()})[:12]


def register_challenger(
    plan: dict,
    summary: dict,
    evaluations: dict,
    decision: dict,
    labels: dict[str, str],
    settings: Settings | None = None,
) -> dict:
    """Register a candidate that passed the gate with lineage tags and a model card; alias it ``challenger``.

    Returns ``{"name", "version", "reused"}``. Raises ValueError for a candidate that failed the gate.
    """
    from tuneops.core.hashing import hash_dir
    from tuneops.registry.model_card import render_model_card
    from tuneops.registry.registry import git_commit, register_candidate, set_challenger

    if not decision["passed"]:
        raise ValueError(
            "refusing to register a candidate that failed the gate: " + "; ".join(decision["reasons"])
        )
    settings = settings or load_settings()
    store = _store(settings)
    recipe = load_recipe(plan["recipe"])
    base = _base_ref(recipe, settings)
    dataset_dir = store.fetch_dir(_key_of(plan["dataset_uri"], store))
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    candidate = evaluations["candidate"]["metrics"]
    lineage = {
        "tuneops.dataset_version": plan["dataset_version"],
        "tuneops.dataset_digest": hash_dir(dataset_dir)[:16],
        "tuneops.dataset_uri": plan["dataset_uri"],
        "tuneops.template_id": plan["template_id"],
        "tuneops.template_hash": plan["template_hash"],
        "tuneops.recipe_hash": summary["recipe_hash"],
        "tuneops.base_model": recipe.base_model,
        "tuneops.git_commit": git_commit(),
        "tuneops.gate_report": decision.get("report_uri", ""),
        **{f"tuneops.{k}": v for k, v in labels.items()},
    }
    tags = {
        **lineage,
        **{f"tuneops.gate.{k}": round(v, 6) for k, v in candidate.items() if k in _gated(decision)},
        "tuneops.gate.decision": decision["deciding_rule"][:500],
    }
    card = render_model_card(
        name=plan["model_name"],
        plan=plan,
        summary=summary,
        manifest=manifest,
        decision=decision,
        lineage=lineage,
    )
    registered = register_candidate(
        name=plan["model_name"],
        base_path=base.path,
        adapter_dir=store.fetch_dir(_key_of(plan["output_uri"], store)) / "adapter",
        fingerprint=evaluations["candidate"]["fingerprint"],
        run_id=plan["mlflow_run_id"],
        template=PromptTemplate.model_validate(manifest["template"]),
        tags=tags,
        max_new_tokens=recipe.eval.max_new_tokens,
        decoding=recipe.eval.decoding,
        model_card=card,
        settings=settings,
    )
    set_challenger(registered["name"], registered["version"], settings)
    return {**registered, "auto_approve": recipe.registry.auto_approve}


def _gated(decision: dict) -> set[str]:
    return {row["metric"] for row in decision["table"] if row["gated"]} | {
        row["metric"]
        for row in decision["table"]
        if row["metric"].startswith(("test.", "golden.", "safety."))
    }


def promote_challenger(
    registered: dict, approval: dict | None, labels: dict[str, str], settings: Settings | None = None
) -> dict:
    """Move ``champion`` to the registered version: approved by a reviewer (``approval`` is the
    ApprovalOperator's result) or by the recipe's ``auto_approve``. Returns the promotion dict."""
    from tuneops.registry.registry import promote

    settings = settings or load_settings()
    if approval is not None:
        by = (approval.get("responded_by_user") or {}).get("name") or "unknown reviewer"
        reason = (approval.get("params_input") or {}).get("reason") or ""
    elif registered.get("auto_approve"):
        by, reason = "auto_approve (recipe)", "registry.auto_approve is true in the recipe"
    else:
        raise ValueError(
            f"{registered['name']} v{registered['version']} has no approval: approve it in the Airflow UI "
            "(Required actions) or set registry.auto_approve in the recipe"
        )
    owner = f"{labels.get('dag_id', 'cli')}/{labels.get('dag_run_id', '-')}"
    return promote(registered["name"], registered["version"], by, settings, reason=reason, owner=owner)


def record_rejection(registered: dict, approval: dict, settings: Settings | None = None) -> dict:
    """Record a reviewer's rejection (who, when, why) on the version and take ``challenger`` off it."""
    from tuneops.registry.registry import reject

    settings = settings or load_settings()
    by = (approval.get("responded_by_user") or {}).get("name") or "timeout (default: Reject)"
    reason = (approval.get("params_input") or {}).get("reason") or ""
    return reject(registered["name"], registered["version"], by, reason, settings)


def rollback_champion(
    model_name: str, version: str | None, requested_by: str, reason: str, settings: Settings | None = None
) -> dict:
    """Move ``champion`` of ``model_name`` back (see ``tuneops.registry.registry.rollback``)."""
    from tuneops.registry.registry import rollback

    return rollback(model_name, version, requested_by, reason, settings or load_settings())
