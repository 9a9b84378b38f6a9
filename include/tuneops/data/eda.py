"""Exploratory data analysis of one validated batch: an HTML page with plots and a JSON summary.

Figures that pandas computes in vectorised string operations (lengths, null, empty and
duplicate rates, length shift) use every row. Figures that need Python per text (n-grams,
PII, token counts, vocabulary) use a deterministic sample of at most ``SAMPLE_SIZE``
non-null values per column, so a batch of a million rows takes seconds, not hours.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.core.drift import psi, words
from tuneops.core.pii import PII_PATTERNS, find_pii

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_SIZE = 50_000
SAMPLE_SEED = 0
TOP_NGRAMS = 10
VOCAB_SIZE = 1_000
MAX_LABELS = 50
HIST_BINS = 40
SPREAD_KEYS = ("min", "mean", "p50", "p95", "max")


def build_eda_report(
    frame: pd.DataFrame,
    out_dir: Path,
    *,
    text_columns: list[str],
    label_column: str | None = None,
    previous: pd.DataFrame | None = None,
    count_tokens: Callable[[str], int] | None = None,
    title: str = "",
) -> dict:
    """Profile ``text_columns`` of ``frame`` and write ``report.html``, PNG plots and ``summary.json``.

    Lengths and the null, empty, duplicate and near-duplicate rates cover every row. N-grams,
    PII hits, token counts (``count_tokens``, when given) and the vocabulary behind
    ``vocab_jaccard`` and ``oov_rate`` come from a fixed-seed sample of at most
    ``SAMPLE_SIZE`` non-null values per column (``sampled_rows`` in each column's stats),
    so PII counts are hits in that sample. ``previous``, when given, adds a ``shift`` section
    comparing each text column with that earlier batch. ``labels`` holds the
    ``MAX_LABELS`` most common values of ``label_column``; ``label_values`` counts them all.

    Returns the summary dict (plain ints, floats, strings; ``None`` where a figure is
    undefined). Raises ValueError naming any column that ``frame`` or ``previous`` lacks.
    """
    _require_columns(frame, [*text_columns, *([label_column] if label_column else [])], "frame")
    if previous is not None:
        _require_columns(previous, text_columns, "previous")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = len(frame)
    summary: dict = {"title": title, "rows": rows, "columns": {}}
    lengths, token_counts, unigrams = {}, {}, {}
    for col in text_columns:
        values = _text_values(frame[col])
        sample = _sample(values)
        lengths[col] = values.str.len().to_numpy(dtype="int64")
        sample_words = [words(text) for text in sample]
        stats = {
            "null_rate": _rate(rows - len(values), rows),
            "empty_rate": _rate(int((values.str.strip() == "").sum()), len(values)),
            "chars": _spread(lengths[col]),
        }
        if count_tokens is not None:
            token_counts[col] = [count_tokens(text) for text in sample]
            stats["tokens"] = _spread(token_counts[col])
        pii: Counter = Counter()
        for text in sample:
            pii.update(find_pii(text))
        unigrams[col] = Counter(w for ws in sample_words for w in ws)
        bigrams = Counter(f"{a} {b}" for ws in sample_words for a, b in zip(ws, ws[1:], strict=False))
        stats |= {
            "duplicate_rate": _rate(int(values.duplicated().sum()), len(values)),
            "near_duplicate_rate": _rate(int(_normalised(values).duplicated().sum()), len(values)),
            "top_unigrams": [[w, n] for w, n in unigrams[col].most_common(TOP_NGRAMS)],
            "top_bigrams": [[b, n] for b, n in bigrams.most_common(TOP_NGRAMS)],
            "pii": dict(pii),
            "sampled_rows": len(sample),
        }
        summary["columns"][col] = stats
    summary["duplicate_row_rate"] = _rate(int(frame[text_columns].duplicated().sum()), rows)

    if label_column:
        counts = frame[label_column].value_counts()
        summary["labels"] = {str(value): int(n) for value, n in counts.head(MAX_LABELS).items()}
        summary["label_values"] = len(counts)

    previous_lengths = {}
    if previous is not None:
        summary["previous_rows"] = len(previous)
        summary["shift"] = {}
        for col in text_columns:
            values = _text_values(previous[col])
            previous_lengths[col] = values.str.len().to_numpy(dtype="int64")
            previous_words = Counter(w for text in _sample(values) for w in words(text))
            summary["shift"][col] = {
                **_length_shift(lengths[col], previous_lengths[col]),
                **_vocab_shift(unigrams[col], previous_words),
            }

    summary["plots"] = _write_plots(summary, out_dir, lengths, previous_lengths, token_counts)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    (out_dir / "report.html").write_text(_render_html(summary))
    return summary


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} has no column(s) {missing}; it has {sorted(map(str, frame.columns))}. "
            "Pass text_columns/label_column that the batch has."
        )


def _text_values(series: pd.Series) -> pd.Series:
    """The non-null values of a text column as Arrow strings (a stray number becomes its text)."""
    # Arrow storage whatever the frame holds, so the string operations and the RE2 patterns
    # in _normalised always run in Arrow's compiled kernels.
    return series[series.notna()].astype("string[pyarrow]")


def _sample(values: pd.Series) -> list[str]:
    """At most SAMPLE_SIZE values; the same batch always gives the same sample."""
    if len(values) <= SAMPLE_SIZE:
        return values.tolist()
    return values.sample(n=SAMPLE_SIZE, random_state=SAMPLE_SEED).tolist()


def _normalised(values: pd.Series) -> pd.Series:
    """Lowercase, digits, punctuation and symbols removed, whitespace collapsed.

    "Order 123 late!" and "order 456 late" both become "order late".
    """
    # RE2's Unicode classes: Python's \w, \d and \s would send pandas to a per-row Python
    # loop, about ten times slower on a million rows.
    return (
        values.str.lower()
        .str.replace(r"[\p{Nd}\p{P}\p{S}]+", "", regex=True)
        .str.replace(r"[\p{Z}\t\n\v\f\r]+", " ", regex=True)
        .str.strip()
    )


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def _spread(numbers) -> dict:
    """min, mean, p50, p95 and max as plain numbers; all None when there are no numbers."""
    import numpy as np

    if len(numbers) == 0:
        return dict.fromkeys(SPREAD_KEYS)
    arr = np.asarray(numbers)
    return {
        "min": int(arr.min()),
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
    }


def _length_shift(current, before) -> dict:
    """PSI over decile bins of the earlier lengths, and the two-sample KS statistic."""
    from scipy.stats import ks_2samp

    if len(current) == 0 or len(before) == 0:
        return {"psi_chars": None, "ks_chars": None}
    return {"psi_chars": psi(before, current), "ks_chars": float(ks_2samp(current, before).statistic)}


def _vocab_shift(current: Counter, before: Counter) -> dict:
    """Jaccard overlap of the VOCAB_SIZE commonest words, and the share of words unseen before."""
    top_now = {w for w, _ in current.most_common(VOCAB_SIZE)}
    top_before = {w for w, _ in before.most_common(VOCAB_SIZE)}
    union = top_now | top_before
    total = sum(current.values())
    return {
        "vocab_jaccard": len(top_now & top_before) / len(union) if union else None,
        "oov_rate": _rate(sum(n for w, n in current.items() if w not in before), total),
    }


def _slugs(columns: list[str]) -> dict[str, str]:
    """A file-name-safe, distinct name per column."""
    slugs: dict[str, str] = {}
    for i, col in enumerate(columns):
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", col).strip("_") or "column"
        slugs[col] = slug if slug not in slugs.values() else f"{slug}_{i}"
    return slugs


def _write_plots(
    summary: dict, out_dir: Path, lengths: dict, previous_lengths: dict, token_counts: dict
) -> list[str]:
    """Draw every plot into ``out_dir``; returns the PNG file names in the order the page shows them."""
    # The object-oriented API needs no pyplot state and no display, and switches no backend
    # in the caller's process (a notebook keeps its own); unreferenced figures are freed.
    from matplotlib.figure import Figure

    plots: list[str] = []

    def save(fig: Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plots.append(name)

    columns = summary["columns"]
    names = list(columns)
    for col, slug in _slugs(names).items():
        fig = Figure(figsize=(7, 3.5))
        series = [("current", lengths[col])] + (
            [("previous", previous_lengths[col])] if previous_lengths else []
        )
        _histogram(fig.add_subplot(), series, f"{col}: characters per value", "characters")
        save(fig, f"chars_{slug}.png")
        if col in token_counts:
            fig = Figure(figsize=(7, 3.5))
            _histogram(
                fig.add_subplot(), [("sample", token_counts[col])], f"{col}: tokens per value", "tokens"
            )
            save(fig, f"tokens_{slug}.png")

    fig = Figure(figsize=(7, 3.5))
    _grouped_bars(
        fig.add_subplot(),
        names,
        {rate: [columns[c][rate] or 0.0 for c in names] for rate in ("null_rate", "empty_rate")},
        "null and empty values",
        "share of rows / non-null values",
        percent=True,
    )
    save(fig, "null_empty.png")

    kinds = list(PII_PATTERNS)
    fig = Figure(figsize=(7, 3.5))
    _grouped_bars(
        fig.add_subplot(),
        kinds,
        {c: [columns[c]["pii"].get(k, 0) for k in kinds] for c in names},
        "PII hits by kind (sampled values)",
        "hits",
        percent=False,
    )
    save(fig, "pii.png")

    if "labels" in summary:
        labels = summary["labels"]
        fig = Figure(figsize=(7, 1.2 + 0.3 * max(len(labels), 1)))
        ax = fig.add_subplot()
        ax.barh(list(labels)[::-1], list(labels.values())[::-1])
        ax.set_title("label balance")
        ax.set_xlabel("rows")
        save(fig, "labels.png")
    return plots


def _histogram(ax, series: list[tuple[str, object]], title: str, xlabel: str) -> None:
    """Integer-valued histograms on shared bins, as shares so batches of any size compare."""
    import numpy as np

    series = [(name, np.asarray(v)) for name, v in series if len(v)]
    ax.set_title(title)
    if not series:
        ax.text(0.5, 0.5, "no non-null values", ha="center", va="center", transform=ax.transAxes)
        return
    everything = np.concatenate([v for _, v in series])
    # One very long text would squash every other bar into the first, so the top 1% share the last bar.
    low = int(everything.min())
    high = max(int(np.ceil(np.percentile(everything, 99))), low + 1)
    width = max(1, int(np.ceil((high - low + 1) / HIST_BINS)))
    edges = np.arange(low, high + width + 1, width) - 0.5
    for name, v in series:
        ax.hist(np.minimum(v, high), bins=edges, weights=np.full(len(v), 1 / len(v)), alpha=0.6, label=name)
    if everything.max() > high:
        xlabel += f" (values above {high} in the last bar)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of values")
    ax.legend()


def _grouped_bars(
    ax, groups: list[str], bars: dict[str, list[float]], title: str, ylabel: str, *, percent: bool
) -> None:
    """Side-by-side bars per group, each labelled with its value so a zero still reads as measured."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    x = np.arange(len(groups))
    width = 0.8 / max(len(bars), 1)
    for i, (name, heights) in enumerate(bars.items()):
        drawn = ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=name)
        ax.bar_label(drawn, fmt="{:.1%}" if percent else "{:,.0f}", fontsize=8)
    top = max((h for heights in bars.values() for h in heights), default=0)
    ax.set_ylim(0, top * 1.2 if top else 1)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(x, groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table from already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(name: str) -> str:
    esc = html.escape(name)
    return f'<img src="{esc}" alt="{esc}">'


def _render_html(summary: dict) -> str:
    """The report page; every value that came from the data is escaped."""
    e = html.escape
    columns = summary["columns"]
    title = e(summary["title"] or "EDA report")
    plots = set(summary["plots"])
    slugs = _slugs(list(columns))
    parts = [
        f"<h1>{title}</h1>",
        f"<p>{_num(summary['rows'])} rows; {_pct(summary['duplicate_row_rate'])} of rows repeat an earlier row's "
        "text columns exactly"
        + (
            f"; compared with a previous batch of {_num(summary['previous_rows'])} rows"
            if "shift" in summary
            else ""
        )
        + ".</p>",
        _img("null_empty.png"),
    ]
    for col, stats in columns.items():
        rates = [
            ["null rate", _pct(stats["null_rate"])],
            ["empty or whitespace-only (of non-null)", _pct(stats["empty_rate"])],
            ["exact duplicates (of non-null)", _pct(stats["duplicate_rate"])],
            ["near duplicates (of non-null)", _pct(stats["near_duplicate_rate"])],
            ["values sampled for n-grams, PII, tokens", _num(stats["sampled_rows"])],
        ]
        spreads = [
            [kind] + [_num(stats[kind][k]) for k in SPREAD_KEYS]
            for kind in ("chars", "tokens")
            if kind in stats
        ]
        ngrams = [
            [e(u[0]) if u else "", _num(u[1]) if u else "", e(b[0]) if b else "", _num(b[1]) if b else ""]
            for u, b in zip_longest(stats["top_unigrams"], stats["top_bigrams"])
        ]
        parts += [
            f"<h2>{e(col)}</h2>",
            _table(["figure", "value"], rates),
            _table(["length", *SPREAD_KEYS], spreads),
            _table(["top word", "count", "top bigram", "count"], ngrams),
        ]
        parts += [
            _img(f"{kind}_{slugs[col]}.png")
            for kind in ("chars", "tokens")
            if f"{kind}_{slugs[col]}.png" in plots
        ]

    kinds = list(PII_PATTERNS)
    parts += [
        "<h2>PII (hits in sampled values)</h2>",
        _table(
            ["kind", *map(e, columns)],
            [[e(k)] + [_num(s["pii"].get(k, 0)) for s in columns.values()] for k in kinds],
        ),
        _img("pii.png"),
    ]
    if "shift" in summary:
        parts += [
            "<h2>Shift from the previous batch</h2>",
            _table(
                [
                    "column",
                    "PSI of characters",
                    "KS of characters",
                    "vocabulary Jaccard",
                    "out-of-vocabulary words",
                ],
                [
                    [
                        e(col),
                        _num(s["psi_chars"], 3),
                        _num(s["ks_chars"], 3),
                        _num(s["vocab_jaccard"], 3),
                        _pct(s["oov_rate"]),
                    ]
                    for col, s in summary["shift"].items()
                ],
            ),
        ]
    if "labels" in summary:
        shown = f" (the {len(summary['labels'])} most common of {summary['label_values']})"
        parts += [
            "<h2>Labels" + (shown if summary["label_values"] > len(summary["labels"]) else "") + "</h2>",
            _table(["label", "rows"], [[e(k), _num(n)] for k, n in summary["labels"].items()]),
            _img("labels.png"),
        ]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}img{display:block;margin:1em 0}"
    )
    body = "\n".join(parts)
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>{style}</style></head>\n<body>\n{body}\n</body></html>\n'
