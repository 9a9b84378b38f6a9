"""The monitoring window's HTML report: verdict, breaches, every check, plots of the window
against the training reference and of the trend over earlier windows, worst feedback."""

from __future__ import annotations

import html
from collections import Counter

from tuneops.evaluation.report import STYLE, png_data_uri

TREND = (
    "drift.prompt_tokens.psi",
    "drift.prompt_chars.psi",
    "drift.oov_increase",
    "drift.label_psi",
    "health.format_valid",
    "feedback.thumbs_up_rate",
)


def _plots(summary: dict, history: list[dict], reference, records: list[dict], count_tokens) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tuneops.core.drift import label_of

    images = []
    if reference is not None and records:
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
        prompts = [r["prompt"] for r in records]
        if reference.prompt_tokens is not None and count_tokens is not None:
            ref, cur, what = reference.prompt_tokens, [count_tokens(p) for p in prompts], "prompt tokens"
        else:
            ref, cur, what = reference.prompt_chars, [len(p) for p in prompts], "prompt characters"
        axes[0].hist(ref, bins=30, alpha=0.5, density=True, label="training reference")
        axes[0].hist(cur, bins=30, alpha=0.5, density=True, label="this window")
        axes[0].set_title(what)
        axes[0].legend()
        if reference.label_key:
            cur_labels = Counter(label_of(r["response"], reference.label_key) for r in records)
            cats = sorted(set(reference.labels) | set(cur_labels))
            ref_n, cur_n = sum(reference.labels.values()) or 1, sum(cur_labels.values()) or 1
            xs = range(len(cats))
            axes[1].bar(
                [x - 0.2 for x in xs], [reference.labels[c] / ref_n for c in cats], 0.4, label="reference"
            )
            axes[1].bar([x + 0.2 for x in xs], [cur_labels[c] / cur_n for c in cats], 0.4, label="window")
            axes[1].set_xticks(list(xs), cats, rotation=45, ha="right", fontsize=8)
            axes[1].set_title(f"output {reference.label_key} mix")
            axes[1].legend()
        images.append(png_data_uri(fig, dpi=80))
    windows = [*history, summary]
    if len(windows) > 1:
        fig, ax = plt.subplots(figsize=(12, 3.5))
        for name in TREND:
            ys = [w["metrics"].get(name) for w in windows]
            if any(y is not None for y in ys):
                ax.plot(
                    range(len(windows)),
                    [float("nan") if y is None else y for y in ys],
                    marker="o",
                    label=name,
                )
        ax.set_xticks(
            range(len(windows)), [w["window_end"][5:16] for w in windows], rotation=45, ha="right", fontsize=7
        )
        ax.set_title("trend over windows")
        ax.legend(fontsize=7)
        images.append(png_data_uri(fig, dpi=80))
    return images


def render_monitor_report(
    summary: dict, history: list[dict], reference, records: list[dict], count_tokens
) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    breaches = summary["breaches"]
    verdict = f"{len(breaches)} breach(es)" + (": retraining requested" if summary["retrain"] else "")
    color = "#cf222e" if breaches else "#1a7f37"
    title = f"Monitoring {summary['model']} {summary['window_start'][:16]} .. {summary['window_end'][:16]}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>{STYLE}</head><body>",
        f"<h1>{e(title)}</h1>",
        f"<h2 style='color:{color}'>{e(verdict) if breaches else 'No breach'}</h2>",
        f"<p>{summary['requests']} requests; versions {e(str(summary['versions']))}; "
        f"reference: {e(reference.source if reference else 'none')}</p>",
    ]
    parts += [f"<p><i>{e(n)}</i></p>" for n in summary["notes"]]
    parts.append(
        "<h3>Checks</h3><table><tr><th>verdict</th><th>kind</th><th>metric</th><th>value</th><th>rule</th></tr>"
    )
    for c in summary["checks"]:
        cls, word = ("fail", "BREACH") if c["breached"] else ("ok", "ok")
        parts.append(
            f"<tr><td class='{cls}'>{word}</td><td>{c['kind']}</td><td>{e(c['metric'])}</td>"
            f"<td>{c['value']:.4g}</td><td>{c['op']} {c['threshold']:g}</td></tr>"
        )
    parts.append("</table><h3>All metrics</h3><table><tr><th>metric</th><th>value</th></tr>")
    parts += [f"<tr><td>{e(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(summary["metrics"].items())]
    parts.append("</table>")
    parts += [
        f"<img alt='plot' src='{src}'><br>"
        for src in _plots(summary, history, reference, records, count_tokens)
    ]
    if summary["worst_feedback"]:
        parts.append(
            "<h3>Worst-rated examples</h3><table><tr><th>prompt (end)</th><th>response</th><th>correction</th>"
            "<th>comment</th></tr>"
        )
        for w in summary["worst_feedback"]:
            parts.append(
                f"<tr><td><pre>{e(w['prompt'] or '')}</pre></td><td><pre>{e(w['response'] or '')}</pre></td>"
                f"<td><pre>{e(w['correction'] or '')}</pre></td><td>{e(w['comment'] or '')}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
