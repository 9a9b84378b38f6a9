"""The quality gate: candidate vs base vs champion on the same examples, failing closed."""

from __future__ import annotations

import math

from tuneops.config import GateRules
from tuneops.evaluation import METRIC_NAMES


def decide(rules: GateRules, candidate: dict, base: dict, champion: dict | None) -> dict:
    """Apply ``rules`` to metric dicts; returns ``{"passed", "reasons", "metric", "table"}``.

    Any missing or non-finite value of the gated metric fails the gate.
    """
    m = rules.metric
    cand, base_v = candidate.get(m), base.get(m)
    champ_v = champion.get(m) if champion else None
    reasons: list[str] = []
    if cand is None or not math.isfinite(cand) or base_v is None or not math.isfinite(base_v):
        reasons.append(f"{m} is missing or not finite (candidate={cand}, base={base_v}): failing closed")
    else:
        if cand < rules.min_value:
            reasons.append(f"candidate {m} {cand:.4f} < min_value {rules.min_value}")
        if cand - base_v < rules.min_improvement_over_base:
            reasons.append(f"candidate {m} improves on base by {cand - base_v:+.4f} < {rules.min_improvement_over_base}")
        if champ_v is not None and champ_v - cand > rules.max_regression_vs_champion:
            reasons.append(
                f"candidate {m} {cand:.4f} regresses {champ_v - cand:.4f} vs champion {champ_v:.4f} "
                f"(allowed {rules.max_regression_vs_champion})"
            )
    table = [
        {
            "metric": name,
            "base": base.get(name),
            "champion": champion.get(name) if champion else None,
            "candidate": candidate.get(name),
            "delta_vs_base": _delta(candidate.get(name), base.get(name)),
            "delta_vs_champion": _delta(candidate.get(name), champion.get(name) if champion else None),
            "gated": name == m,
        }
        for name in METRIC_NAMES
    ]
    return {"passed": not reasons, "reasons": reasons or [f"all rules on {m} passed"], "metric": m, "table": table}


def _delta(a, b):
    return None if a is None or b is None else a - b


def format_table(decision: dict) -> str:
    """The gate's table as fixed-width text for task logs and the demo summary."""

    def cell(v):
        return "-" if v is None else f"{v:.4f}"

    header = f"{'metric':<12}{'base':>10}{'champion':>10}{'candidate':>11}{'vs base':>10}{'vs champ':>10}"
    lines = [header, "-" * len(header)]
    for row in decision["table"]:
        mark = " *" if row["gated"] else ""
        lines.append(
            f"{row['metric']:<12}{cell(row['base']):>10}{cell(row['champion']):>10}{cell(row['candidate']):>11}"
            f"{_signed(row['delta_vs_base']):>10}{_signed(row['delta_vs_champion']):>10}{mark}"
        )
    verdict = "PASSED" if decision["passed"] else "FAILED"
    lines.append(f"gate {verdict} on {decision['metric']} (*): " + "; ".join(decision["reasons"]))
    return "\n".join(lines)


def _signed(v):
    return "-" if v is None else f"{v:+.4f}"
