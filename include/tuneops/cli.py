"""``tuneops``: the library's steps on the command line; each flow calls the same ``tuneops.stages`` functions as its DAG."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneops.core.settings import default_recipe


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_sample_data(args) -> None:
    from tuneops.core.sample_data import write_sample_batch

    print(write_sample_batch(Path(args.out), args.rows, args.seed))


def cmd_base_model(args) -> None:
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.models.base_model import (
        BaseModelError,
        import_base_model,
        list_base_models,
        read_metadata,
        resolve_base_model,
    )

    store = ArtifactStore.from_settings(load_settings())
    if args.action == "import":
        _print(import_base_model(args.source, args.name, store, args.license, args.trust_remote_code))
    elif args.action == "list":
        for meta in list_base_models(store):
            print(
                f"{meta['ref']:<40} {meta.get('parameters', 0) / 1e6:>8.1f}M  {meta.get('license', '?'):<12} {meta['uri']}"
            )
    else:
        path = resolve_base_model(args.ref, store)
        if args.action == "path":
            print(path)
            return
        meta = read_metadata(path)
        if meta is None:
            raise BaseModelError(
                f"{args.ref} is not a base-model artifact (it has no base_model.json); import it to record its "
                f"source, license and fingerprint: tuneops base-model import {args.ref} --name <name>"
            )
        _print(meta)


def cmd_init_dataset(args) -> None:
    from tuneops.core.settings import load_settings
    from tuneops.data.onboarding import OVERRIDE_ROLES, init_dataset, report

    settings = load_settings()
    result = init_dataset(
        Path(args.sample),
        args.name,
        Path(args.dir) if args.dir else settings.home / "configs",
        base_model=args.base_model,
        force=args.force,
        overrides={role: getattr(args, role) for role in OVERRIDE_ROLES if getattr(args, role)},
        project_dirs=settings.project_dirs,
    )
    print(report(result, settings))


def cmd_validate(args) -> None:
    from tuneops.stages.validate_data import validate

    _print(validate(args.batch, args.project))


def cmd_build_prompts(args) -> None:
    from tuneops.stages.build_prompt_dataset import build_prompts

    _print(build_prompts(args.validated, args.project))


def cmd_train(args) -> int:
    from tuneops.training.train import main

    return main(args.train_args)


def cmd_finetune(args) -> int:
    """Exits 1 when the gate failed: a failed verdict is a failed command, as it is a failed DAG run."""
    from tuneops.stages.finetune import finetune
    from tuneops.training.train import parse_sets

    # A shell user may name any recipe file: the recipe-folder check is for DAG Params.
    result = finetune(
        args.dataset_uri,
        args.recipe,
        {"dag_id": "cli"},
        check_recipe=False,
        project=args.project,
        overrides=parse_sets(args.set) if args.set else None,
    )
    decision, registered = result["decision"], result["registered"]
    print(decision.text)
    print(f"gate report: {decision.report_uri}")
    _print(
        {
            "project": result["plan"].project,
            "decision": decision.model_dump(mode="json", exclude={"text"}),
            "registered": registered.model_dump() if registered else None,
            "promoted": result["promoted"],
        }
    )
    if registered is not None and result["promoted"] is None:
        print(
            f"{registered.name} v{registered.version} is the challenger; promote it with "
            f"`tuneops promote --model {registered.name} --version {registered.version} --by <you>`"
        )
    if not decision.passed:
        print(f"tuneops finetune: the gate failed: {decision.deciding_rule}", file=sys.stderr)
        return 1
    return 0


def cmd_promote(args) -> None:
    from tuneops.core.settings import load_settings
    from tuneops.registry.registry import promote

    _print(promote(args.model, args.version, args.by, load_settings(), reason=args.reason))


def cmd_record_hashes(args) -> None:
    from tuneops.core.settings import load_settings
    from tuneops.registry.registry import record_hashes

    _print(record_hashes(args.model, args.version, args.by, load_settings()))


def cmd_rollback(args) -> None:
    from tuneops.stages.rollback import rollback_champion

    _print(rollback_champion(args.model, args.version, args.by, args.reason))


def cmd_generate(args) -> None:
    from tuneops.serving.champion import generate_with_champion

    inputs = [args.prompt] if args.prompt else [{"subject": args.subject, "input": args.body}]
    for rec in generate_with_champion(inputs, args.model, args.alias):
        print(f"[{rec['model']} v{rec['version']}] {rec['response']}")


def cmd_monitor(args) -> None:
    from tuneops.stages.monitor import assess, monitor_config

    _print(assess(monitor_config(args.config, args.window_hours)))


def cmd_serve(args) -> None:
    from tuneops.serving.app import ServingConfig, serve

    config = ServingConfig(
        model_name=args.model_name,
        alias=args.alias,
        variant=args.variant,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_new_tokens_limit=args.max_new_tokens_limit,
    )
    serve(config, host=args.host, port=args.port)


def cmd_compress(args) -> None:
    from tuneops.config import load_recipe
    from tuneops.evaluation.compression import compare_variants

    _print(compare_variants(args.model, args.version, load_recipe(args.recipe)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sample-data", help="write the deterministic sample support-ticket batch (JSONL)")
    p.add_argument(
        "--out", required=True, help="file to write, e.g. landing/support_tickets/batch-0001.jsonl"
    )
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("base-model", help="import, list and locate base models (the artifacts recipes name)")
    actions = p.add_subparsers(dest="action", required=True)
    imp = actions.add_parser(
        "import",
        help="import a save_pretrained folder, a .gguf file or a hub id as imported:<name> (safetensors + "
        "tokenizer + chat template, with its source, license and content fingerprint)",
    )
    imp.add_argument(
        "source", help="a model folder, a .gguf file, or a hub id (org/model) where the hub is reachable"
    )
    imp.add_argument("--name", required=True, help="the name recipes use: base_model: imported:<name>")
    imp.add_argument(
        "--license", help="the model's license (default: what the source declares, else 'unknown')"
    )
    imp.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own code (folder and hub)"
    )
    actions.add_parser("list", help="every base model in the artifact store")
    for action, what in (("path", "print its local folder"), ("show", "print its base_model.json")):
        q = actions.add_parser(action, help=f"build, convert or fetch a base model (once) and {what}")
        q.add_argument(
            "ref", help="builtin:smollm2-135m-instruct, builtin:tiny-llama, imported:<name>, a folder"
        )
    p.set_defaults(func=cmd_base_model)

    p = sub.add_parser(
        "init-dataset",
        help="propose a column mapping for a sample file and write a project (dataset config, recipe) that runs as it is",
    )
    p.add_argument(
        "sample", help="a sample of the data: a .jsonl, .csv or .parquet file (its first 2,000 records)"
    )
    p.add_argument("--name", required=True, help="project name (lower-case letters, digits, '_' and '-')")
    p.add_argument(
        "--dir",
        help="config folder to write projects/, datasets/, recipes/ in (default: <TUNEOPS_HOME>/configs)",
    )
    p.add_argument(
        "--base-model",
        default="builtin:smollm2-135m-instruct",
        help="the recipe's base model and the tokenizer (builtin:tiny-llama trains fastest)",
    )
    p.add_argument("--force", action="store_true", help="overwrite the project's files if they exist")
    for role, what in (
        ("input", "the input (prompt) text"),
        ("response", "the response (target) text"),
        ("instruction", "the instruction"),
        ("id", "a unique record id"),
        ("messages", "a chat list of {role, content}"),
        ("explode", "a list of objects: one row per item, fields named <list>.<field>"),
    ):
        p.add_argument(f"--{role}", metavar="COL", help=f"the column holding {what} (overrides the proposal)")
    p.set_defaults(func=cmd_init_dataset)

    p = sub.add_parser("validate", help="validate a raw batch against its dataset contract and publish it")
    p.add_argument("--batch", required=True, help="file or folder of the batch (path or s3://)")
    p.add_argument("--project", required=True, help="project name (configs/projects/<name>.yaml)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("build-prompts", help="build the versioned prompt dataset from validated batches")
    p.add_argument("--validated", required=True, action="append", help="validated batch URI (repeatable)")
    p.add_argument("--project", help="project name (default: the one whose dataset the batches are)")
    p.set_defaults(func=cmd_build_prompts)

    p = sub.add_parser(
        "train", help="the trainer entry point (same as python -m tuneops.training.train)", add_help=False
    )
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="train, evaluate, gate, register and promote, without Airflow")
    p.add_argument("--dataset-uri", required=True)
    p.add_argument("--project", help="project name (default: the one whose dataset it is)")
    p.add_argument("--recipe", help="recipe name or YAML path (default: the project's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "promote", help="approve a registered version: move champion to it (records who and why)"
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--by", required=True, help="who approves (recorded on the version)")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser(
        "record-hashes",
        help="vouch for a version registered before tuneops recorded weight hashes (so its loaders accept it)",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--by", required=True, help="who vouches for the stored files (recorded on the version)")
    p.set_defaults(func=cmd_record_hashes)

    p = sub.add_parser("rollback", help="move champion back to a version (default: previous_champion)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", help="version to restore; default: the previous_champion alias")
    p.add_argument("--by", required=True, help="who rolls back (recorded on both versions)")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("generate", help="generate with models:/<model>@<alias> and log the request")
    p.add_argument("--model", default="tuneops-support-triage")
    p.add_argument("--alias", default="champion")
    p.add_argument("--prompt", help="a full prompt; or give --subject and --body to use the model's template")
    p.add_argument("--subject", default="")
    p.add_argument("--body", default="")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "monitor", help="assess the last window of the inference log and feedback (drift, health)"
    )
    p.add_argument("--config", default="support-triage", help="monitoring config name or YAML path")
    p.add_argument("--window-hours", type=int, default=None)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("serve", help="serve <model>@<alias> over REST: /generate, /feedback, /health")
    p.add_argument("--model-name", default="tuneops-support-triage")
    p.add_argument("--alias", default="champion")
    p.add_argument("--variant", choices=["merged", "int8"], default="merged")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch-size", type=int, default=8, help="1 turns request batching off")
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--max-new-tokens-limit", type=int, default=256)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "compress", help="gate the quantized serving variant of a version against the merged one"
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--recipe", default=default_recipe())
    p.set_defaults(func=cmd_compress)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # one line per S3 client otherwise
    from tuneops.config import ConfigError

    try:
        return args.func(args) or 0
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"tuneops {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
