"""The gate's HTML report: verdict and deciding rule, every rule, the metric table, plots,
safety probe results and the examples whose output changed, in one self-contained file."""

from __future__ import annotations

import base64
import html
import io

from tuneops.evaluation.gate import ROLES

MAX_CHANGED = 25
STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}th{background:#f4f4f4}"
    ".ok{color:#1a7f37}.fail{color:#cf222e;font-weight:bold}pre{white-space:pre-wrap;margin:0}</style>"
)


def png_data_uri(fig, dpi: int = 90) -> str:
    """A matplotlib figure as an inline PNG ``data:`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _plot(decision: dict) -> str:
    """Grouped bars of every metric on a 0-1 scale (perplexity has its own axis), as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in decision["table"] if not r["lower_is_better"]]
    ppl = [r for r in decision["table"] if r["lower_is_better"]]
    roles = [role for role in ROLES if any(r[role] is not None for r in decision["table"])]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [4, 1]})
    width = 0.8 / max(len(roles), 1)
    for i, role in enumerate(roles):
        axes[0].bar(
            [x + i * width for x in range(len(rows))], [r[role] or 0 for r in rows], width, label=role
        )
        axes[1].bar([x + i * width for x in range(len(ppl))], [r[role] or 0 for r in ppl], width, label=role)
    axes[0].set_xticks(
        [x + width * (len(roles) - 1) / 2 for x in range(len(rows))],
        [r["metric"] for r in rows],
        rotation=60,
        ha="right",
        fontsize=8,
    )
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("higher is better")
    axes[0].legend()
    axes[1].set_xticks(
        [x + width * (len(roles) - 1) / 2 for x in range(len(ppl))],
        [r["metric"] for r in ppl],
        rotation=60,
        ha="right",
        fontsize=8,
    )
    axes[1].set_yscale("log")
    axes[1].set_title("perplexity (lower is better)")
    return png_data_uri(fig)


def render_report(decision: dict, evaluations: dict, outputs: dict[str, dict], title: str) -> str:
    """The report as HTML. ``outputs`` maps role -> ``{"test": DataFrame, "safety": DataFrame, ...}``."""
    e = html.escape
    verdict = "PASSED" if decision["passed"] else "FAILED"
    color = "#1a7f37" if decision["passed"] else "#cf222e"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>{STYLE}</head><body>",
        f"<h1>{e(title)}</h1>",
        f"<h2 style='color:{color}'>Gate {verdict}</h2><p><b>Deciding rule:</b> {e(decision['deciding_rule'])}</p>",
    ]
    for role in ROLES:
        ev = evaluations.get(role)
        if ev is None:
            parts.append(f"<p><b>{role}</b>: none (no champion yet)</p>" if role == "champion" else "")
        elif ev.get("error"):
            parts.append(f"<p class='fail'>{role} evaluation failed: {e(ev['error'])}</p>")
        else:
            version = f" v{ev['version']}" if ev.get("version") else ""
            parts.append(
                f"<p><b>{role}</b>{version}: <code>{e(str(ev.get('fingerprint', ''))[:24])}</code>, examples {e(str(ev.get('n')))}</p>"
            )
    parts.append(
        "<h3>Rules</h3><table><tr><th>verdict</th><th>metric</th><th>rule</th><th>threshold</th><th>detail</th></tr>"
    )
    for c in decision["checks"]:
        cls, word = ("ok", "pass") if c["passed"] else ("fail", "FAIL")
        parts.append(
            f"<tr><td class='{cls}'>{word}</td><td>{e(c['metric'])}</td><td>{e(c['rule'])}</td>"
            f"<td>{c['threshold']}</td><td>{e(c['message'])}</td></tr>"
        )
    parts.append(
        "</table><h3>Metrics</h3><table><tr><th>metric</th><th>base</th><th>champion</th><th>candidate</th>"
        "<th>vs base</th><th>vs champion</th></tr>"
    )
    for r in decision["table"]:
        name = f"<b>{e(r['metric'])}</b> (gated)" if r["gated"] else e(r["metric"])
        if r["lower_is_better"]:
            name += " ↓"
        parts.append(
            f"<tr><td>{name}</td><td>{_fmt(r['base'])}</td><td>{_fmt(r['champion'])}</td><td>{_fmt(r['candidate'])}</td>"
            f"<td>{_fmt(r['delta_vs_base'])}</td><td>{_fmt(r['delta_vs_champion'])}</td></tr>"
        )
    parts.append("</table>")
    if decision["table"]:
        parts.append(f"<img alt='metrics by model' src='{_plot(decision)}'>")
    parts += _safety_section(outputs)
    parts += _changed_section(outputs)
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def _safety_section(outputs: dict[str, dict]) -> list[str]:
    roles = [r for r in ROLES if "safety" in outputs.get(r, {})]
    if not roles:
        return []
    frames = {r: outputs[r]["safety"].set_index("id") for r in roles}
    ids = list(frames[roles[-1]].index)
    out = [
        "<h3>Safety probes</h3><table><tr><th>probe</th><th>kind</th>"
        + "".join(f"<th>{r}</th>" for r in roles)
        + "</tr>"
    ]
    for pid in ids:
        cells = []
        for r in roles:
            row = frames[r].loc[pid] if pid in frames[r].index else None
            if row is None:
                cells.append("<td>–</td>")
            elif row["passed"]:
                cells.append("<td class='ok'>pass</td>")
            else:
                cells.append(
                    f"<td class='fail'>FAIL: {html.escape(row['broken'])}<pre>{html.escape(str(row['output'])[:200])}</pre></td>"
                )
        out.append(
            f"<tr><td>{html.escape(pid)}</td><td>{html.escape(frames[roles[-1]].loc[pid, 'kind'])}</td>{''.join(cells)}</tr>"
        )
    out.append("</table>")
    return out


def _changed_section(outputs: dict[str, dict]) -> list[str]:
    """Test examples where the candidate's output differs from the champion's (or the base's)."""
    cand = outputs.get("candidate", {}).get("test")
    other_role = "champion" if "test" in outputs.get("champion", {}) else "base"
    other = outputs.get(other_role, {}).get("test")
    if cand is None or other is None:
        return []
    merged = cand.merge(other[["id", "prediction"]], on="id", suffixes=("", f"_{other_role}"))
    changed = merged[merged["prediction"] != merged[f"prediction_{other_role}"]]
    out = [
        f"<h3>Changed outputs vs {other_role} ({len(changed)} of {len(merged)} test examples; first {MAX_CHANGED})</h3>",
        f"<table><tr><th>id</th><th>reference</th><th>{other_role}</th><th>candidate</th></tr>",
    ]
    for _, row in changed.head(MAX_CHANGED).iterrows():
        out.append(
            "<tr>"
            + "".join(
                f"<td><pre>{html.escape(str(row[c]))}</pre></td>"
                for c in ("id", "reference", f"prediction_{other_role}", "prediction")
            )
            + "</tr>"
        )
    out.append("</table>")
    return out
