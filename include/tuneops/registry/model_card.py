"""The model card registered with every version: intended use, data, training, metrics, safety, limits."""

from __future__ import annotations

from tuneops.contracts import DatasetManifest, GateDecision, Plan, TrainingSummary
from tuneops.core.lineage import Lineage


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def render_model_card(
    *,
    name: str,
    plan: Plan,
    summary: TrainingSummary,
    manifest: DatasetManifest,
    decision: GateDecision,
    lineage: Lineage,
) -> str:
    """Markdown for the version of ``name`` trained by ``plan`` and gated by ``decision``."""
    template = manifest.template
    counts = manifest.counts
    golden = manifest.golden or {}
    tags = lineage.tags()
    lines = [
        f"# {name}: model card",
        "",
        "## Intended use",
        f"{template.get('description') or 'Generation with the prompt template below.'} "
        f"Requests are rendered with prompt template `{manifest.template_id}` "
        f"(format `{template.get('format', 'instruction')}`); send template fields "
        f"or a prompt rendered with that template. Not for use outside that task.",
        "",
        "## Data",
        f"- Prompt dataset `{manifest.dataset}` version `{manifest.version}` "
        f"({plan.dataset_uri}), content digest `{lineage.dataset_digest}`.",
        "- Examples per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
        f"- Golden set: {golden.get('rows', 0)} pinned examples (sha256 `{str(golden.get('sha256', '–'))[:16]}`)."
        if golden
        else "- Golden set: none configured.",
        "- Source batches: " + ", ".join(b.get("uri", "?") for b in manifest.source_batches) + ".",
        f"- Cleaning: PII redacted ({', '.join(f'{k} {v}' for k, v in manifest.pii_redacted.items()) or 'none'}); "
        f"dropped rows by reason: {manifest.dropped or 'none'}.",
        "",
        "## Training",
        f"- Base model `{summary.base_model}`, LoRA merged into the weights; recipe hash `{summary.recipe_hash}`.",
        f"- {summary.steps} steps on {summary.train_examples} examples ({summary.device}, "
        f"world size {summary.world_size}); validation loss {summary.eval_loss}.",
        "",
        "## Evaluation (same examples for base, champion and candidate)",
        "",
        "| metric | base | champion | candidate |",
        "| --- | --- | --- | --- |",
    ]
    for row in decision.table:
        mark = " (gated)" if row["gated"] else ""
        lines.append(
            f"| {row['metric']}{mark} | {_fmt(row['base'])} | {_fmt(row['champion'])} | {_fmt(row['candidate'])} |"
        )
    lines += [
        "",
        f"Gate: **{'passed' if decision.passed else 'failed'}**, {decision.deciding_rule}.",
        "",
    ]
    lines += ["## Safety", ""]
    safety = [r for r in decision.table if r["metric"].startswith("safety.")]
    lines += [f"- {r['metric']}: {_fmt(r['candidate'])}" for r in safety] or ["- not evaluated"]
    lines += [
        "",
        "## Limits",
        "- Measured on the listed splits only; metrics say nothing about inputs unlike this data.",
        "- The safety suite covers prompt injection, prompt hacking, system-prompt extraction and PII "
        "exfiltration probes written by the project; passing it is not proof of robustness.",
        "- Outputs are not validated at serving time; consumers should check the output format.",
        "",
        "## Lineage",
        *[f"- `{k}`: {v}" for k, v in sorted(tags.items())],
    ]
    return "\n".join(lines) + "\n"
