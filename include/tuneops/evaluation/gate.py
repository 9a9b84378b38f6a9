"""The quality gate: candidate vs base vs champion on the same examples, failing closed.

Every rule in the recipe's ``gate`` block is checked and listed; the candidate passes only
when all hold. A failed evaluation, or a missing or non-finite value that a rule needs,
fails the gate with that as the reason. Improvements and regressions respect each metric's
direction (lower perplexity is better).
"""

from __future__ import annotations

import math

from tuneops.config import LOWER_IS_BETTER, GateRules, metric_names

ROLES = ("base", "champion", "candidate")


def _better_by(metric: str, a: float, b: float) -> float:
    """How much better ``a`` is than ``b`` for this metric (negative: worse)."""
    return (b - a) if metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER else (a - b)


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def decide(rules: GateRules, evaluations: dict[str, dict]) -> dict:
    """Apply ``rules`` to ``{"base": {...}, "candidate": {...}, "champion"?: {...}}``.

    Each role holds ``metrics`` or, when its evaluation failed, ``error``. Returns
    ``{"passed", "deciding_rule", "reasons", "checks", "table"}``: ``checks`` lists every
    rule with its threshold, value and verdict; ``deciding_rule`` is the first failed check
    (or the summary of a pass).
    """
    errors = [f"{role} evaluation failed: {e['error']}" for role, e in evaluations.items() if e.get("error")]
    metrics = {role: dict(e.get("metrics") or {}) for role, e in evaluations.items()}
    cand, base = metrics.get("candidate", {}), metrics.get("base", {})
    champ = metrics.get("champion") if "champion" in evaluations else None
    checks: list[dict] = []

    def check(metric: str, rule: str, threshold: float, needs: str | None, test) -> None:
        value = cand.get(metric)
        other = None if needs is None else (base if needs == "base" else champ or {}).get(metric)
        if not _finite(value) or (needs is not None and not _finite(other)):
            missing = "candidate" if not _finite(value) else needs
            message = f"{metric} is missing or not finite for the {missing} ({rule}): failing closed"
            checks.append(
                {
                    "metric": metric,
                    "rule": rule,
                    "threshold": threshold,
                    "value": value,
                    "passed": False,
                    "message": message,
                }
            )
            return
        ok, message = test(value, other)
        checks.append(
            {
                "metric": metric,
                "rule": rule,
                "threshold": threshold,
                "value": value,
                "passed": ok,
                "message": message,
            }
        )

    for metric, rule in rules.rules.items():
        if rule.min_value is not None:
            t = rule.min_value
            check(
                metric,
                "min_value",
                t,
                None,
                lambda v, _, m=metric, t=t: (v >= t, f"{m} {v:.4f} {'>=' if v >= t else '<'} min_value {t}"),
            )
        if rule.max_value is not None:
            t = rule.max_value
            check(
                metric,
                "max_value",
                t,
                None,
                lambda v, _, m=metric, t=t: (v <= t, f"{m} {v:.4f} {'<=' if v <= t else '>'} max_value {t}"),
            )
        if rule.min_improvement_over_base is not None:
            t = rule.min_improvement_over_base
            check(metric, "min_improvement_over_base", t, "base", _improvement(metric, t, "base"))
        if champ is None:
            continue  # no champion yet: rules against it do not apply
        if rule.min_improvement_over_champion is not None:
            t = rule.min_improvement_over_champion
            check(metric, "min_improvement_over_champion", t, "champion", _improvement(metric, t, "champion"))
        if rule.max_regression_vs_champion is not None:
            t = rule.max_regression_vs_champion
            check(metric, "max_regression_vs_champion", t, "champion", _regression(metric, t))
    floor = rules.safety_floor
    check(
        "safety.pass_rate",
        "safety_floor",
        floor,
        None,
        lambda v, _: (
            v >= floor,
            f"safety.pass_rate {v:.4f} {'>=' if v >= floor else '<'} safety_floor {floor}",
        ),
    )

    failed = [c["message"] for c in checks if not c["passed"]]
    reasons = errors + failed
    passed = not reasons
    table = _table(metrics, set(rules.rules) | {"safety.pass_rate"})
    return {
        "passed": passed,
        "deciding_rule": reasons[0] if reasons else f"all {len(checks)} rules passed",
        "reasons": reasons or [f"all {len(checks)} rules passed"],
        "checks": checks,
        "table": table,
    }


def _improvement(metric: str, t: float, other: str):
    def test(v, o):
        gain = _better_by(metric, v, o)
        verdict = ">=" if gain >= t else "<"
        return gain >= t, f"{metric} improves on {other} ({o:.4f}) by {gain:+.4f} {verdict} {t}"

    return test


def _regression(metric: str, t: float):
    def test(v, o):
        loss = -_better_by(metric, v, o)
        ok = loss <= t + 1e-12
        return (
            ok,
            f"{metric} {v:.4f} vs champion {o:.4f}: regression {max(loss, 0):.4f} {'<=' if ok else '>'} allowed {t}",
        )

    return test


def _table(metrics: dict[str, dict], gated: set[str]) -> list[dict]:
    present = set().union(*(m.keys() for m in metrics.values())) if metrics else set()
    ordered = [m for m in metric_names() if m in present] + sorted(present - set(metric_names()))
    rows = []
    for name in ordered:
        values = {role: metrics.get(role, {}).get(name) if role in metrics else None for role in ROLES}
        rows.append(
            {
                "metric": name,
                **values,
                "delta_vs_base": _delta(values["candidate"], values["base"]),
                "delta_vs_champion": _delta(values["candidate"], values["champion"]),
                "lower_is_better": name.rsplit(".", 1)[-1] in LOWER_IS_BETTER,
                "gated": name in gated,
            }
        )
    return rows


def _delta(a, b):
    return a - b if _finite(a) and _finite(b) else None


def format_table(decision: dict) -> str:
    """The gate's table and verdict as fixed-width text for task logs and the demo summary."""

    def cell(v):
        return "-" if v is None else f"{v:.4f}"

    def signed(v):
        return "-" if v is None else f"{v:+.4f}"

    header = f"{'metric':<37}{'base':>12}{'champion':>12}{'candidate':>12}{'vs base':>13}{'vs champ':>13}"
    lines = [header, "-" * len(header)]
    for row in decision["table"]:
        mark = " *" if row["gated"] else ""
        lines.append(
            f"{row['metric']:<37}{cell(row['base']):>12}{cell(row['champion']):>12}{cell(row['candidate']):>12}"
            f"{signed(row['delta_vs_base']):>13}{signed(row['delta_vs_champion']):>13}{mark}"
        )
    lines.append("rules (* = gated metric):")
    lines += [f"  [{'ok' if c['passed'] else 'FAIL'}] {c['message']}" for c in decision["checks"]]
    verdict = "PASSED" if decision["passed"] else "FAILED"
    lines.append(f"gate {verdict}: {decision['deciding_rule']}")
    return "\n".join(lines)
