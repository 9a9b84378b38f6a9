"""The model card registered with every version: intended use, data, training, metrics, safety, limits."""

from __future__ import annotations


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def render_model_card(
    *,
    name: str,
    plan: dict,
    summary: dict,
    manifest: dict,
    decision: dict,
    lineage: dict[str, str],
) -> str:
    """Markdown for the version of ``name`` trained by ``plan`` and gated by ``decision``."""
    template = manifest.get("template", {})
    counts = manifest.get("counts", {})
    golden = manifest.get("golden") or {}
    lines = [
        f"# {name}: model card",
        "",
        "## Intended use",
        f"{template.get('description') or 'Generation with the prompt template below.'} "
        f"Requests are rendered with prompt template `{manifest.get('template_id')}` "
        f"(format `{template.get('format', 'instruction')}`); send template fields "
        f"or a prompt rendered with that template. Not for use outside that task.",
        "",
        "## Data",
        f"- Prompt dataset `{manifest.get('dataset')}` version `{manifest.get('version')}` "
        f"({plan['dataset_uri']}), content digest `{lineage.get('tuneops.dataset_digest', '?')}`.",
        "- Examples per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
        f"- Golden set: {golden.get('rows', 0)} pinned examples (sha256 `{str(golden.get('sha256', '–'))[:16]}`)."
        if golden
        else "- Golden set: none configured.",
        "- Source batches: " + ", ".join(b.get("uri", "?") for b in manifest.get("source_batches", [])) + ".",
        f"- Cleaning: PII redacted ({', '.join(f'{k} {v}' for k, v in manifest.get('pii_redacted', {}).items()) or 'none'}); "
        f"dropped rows by reason: {manifest.get('dropped') or 'none'}.",
        "",
        "## Training",
        f"- Base model `{summary.get('base_model')}`, LoRA merged into the weights; recipe hash `{summary.get('recipe_hash')}`.",
        f"- {summary.get('steps')} steps on {summary.get('train_examples')} examples ({summary.get('device')}, "
        f"world size {summary.get('world_size')}); validation loss {summary.get('eval_loss')}.",
        "",
        "## Evaluation (same examples for base, champion and candidate)",
        "",
        "| metric | base | champion | candidate |",
        "| --- | --- | --- | --- |",
    ]
    for row in decision["table"]:
        mark = " (gated)" if row["gated"] else ""
        lines.append(
            f"| {row['metric']}{mark} | {_fmt(row['base'])} | {_fmt(row['champion'])} | {_fmt(row['candidate'])} |"
        )
    lines += [
        "",
        f"Gate: **{'passed' if decision['passed'] else 'failed'}**, {decision['deciding_rule']}.",
        "",
    ]
    lines += ["## Safety", ""]
    safety = [r for r in decision["table"] if r["metric"].startswith("safety.")]
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
        *[f"- `{k}`: {v}" for k, v in sorted(lineage.items())],
    ]
    return "\n".join(lines) + "\n"
