"""The live comparison of a rollout's two arms, from the per-minute rollups.

Each arm: requests, error rate, latency p50/p99, labelled requests and accuracy (a
regressor: MAE) with a 95% interval; between the arms, the difference with its
interval; for a shadow, how often the challenger agreed with the champion on the
same rows. Proportions get Wilson intervals (scipy), a difference of proportions
Newcombe's interval built from them (sound at small counts, where the normal
approximation is not); a difference of MAEs a Welch interval.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from scipy.stats import binomtest, norm
from sqlalchemy.orm import Session

from common.clock import as_utc, to_iso, utcnow
from common.monitoring.rollup_reads import Totals, window_totals
from common.rollouts.arms import logged_arm
from common.storage.tables import Rollout

Z = float(norm.ppf(0.975))


def challenger_arm(rollout: Rollout) -> str:
    """The arm the challenger's rows are logged under."""
    return logged_arm(
        "shadow" if rollout.mode == "shadow" else "challenger", rollout.id
    )


def compare(
    session: Session, rollout: Rollout, task: str, until: datetime | None = None
) -> dict[str, Any]:
    """Both arms of `rollout` since it started, side by side."""
    until = until or as_utc(rollout.ended_at or utcnow())
    since = as_utc(rollout.started_at)
    champion = window_totals(session, rollout.model, since, until,
                             rollout.champion_version_id,
                             logged_arm("champion", rollout.id))  # fmt: skip
    challenger = window_totals(session, rollout.model, since, until,
                               rollout.challenger_version_id,
                               challenger_arm(rollout))  # fmt: skip
    arms = {"champion": _arm(champion, task), "challenger": _arm(challenger, task)}
    result: dict[str, Any] = {
        "since": to_iso(since), "until": to_iso(until), "task": task, "arms": arms,
        "difference": _difference(champion, challenger, task),
        "p99_ratio": _ratio(arms["challenger"]["latency_ms"]["p99"],
                            arms["champion"]["latency_ms"]["p99"]),
    }  # fmt: skip
    if rollout.mode == "shadow":
        result["agreement"] = _agreement(challenger, task)
    return result


def _arm(totals: Totals, task: str) -> dict[str, Any]:
    p50, p99 = totals.latency.quantiles(0.5, 0.99)
    arm: dict[str, Any] = {
        "requests": totals.requests, "errors": totals.errors,
        "error_rate": wilson(totals.errors, totals.requests),
        "latency_ms": {"p50": p50, "p99": p99},
        "labelled": totals.labelled,
    }  # fmt: skip
    if task == "regression":
        arm["mae"] = _mae(totals)
    else:
        arm["accuracy"] = wilson(_correct(totals), totals.labelled)
    return arm


def wilson(successes: int, trials: int) -> dict[str, float | None]:
    """A share and its 95% Wilson interval (None when there were no trials)."""
    if trials <= 0:
        return {"value": None, "low": None, "high": None}
    interval = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    return {"value": successes / trials, "low": float(interval.low),
            "high": float(interval.high)}  # fmt: skip


def _correct(totals: Totals) -> int:
    return sum(n for (predicted, true), n in totals.pairs.items() if predicted == true)


def _mae(totals: Totals) -> dict[str, float | None]:
    n = totals.labelled
    if n <= 0:
        return {"value": None, "low": None, "high": None, "sd": None}
    mean = totals.abs_error_sum / n
    variance = max(totals.sq_error_sum / n - mean * mean, 0.0) * n / max(n - 1, 1)
    half = Z * math.sqrt(variance / n)
    return {"value": mean, "low": mean - half, "high": mean + half,
            "sd": math.sqrt(variance)}  # fmt: skip


def _difference(champion: Totals, challenger: Totals, task: str) -> dict[str, Any]:
    """Challenger minus champion, with its 95% interval."""
    if task == "regression":
        a, b = _mae(champion), _mae(challenger)
        if a["value"] is None or b["value"] is None:
            return {"metric": "mae", "value": None, "low": None, "high": None}
        assert a["sd"] is not None and b["sd"] is not None
        se = math.sqrt(a["sd"] ** 2 / champion.labelled
                       + b["sd"] ** 2 / challenger.labelled)  # fmt: skip
        value = b["value"] - a["value"]
        return {"metric": "mae", "value": value, "low": value - Z * se,
                "high": value + Z * se}  # fmt: skip
    return {"metric": "accuracy", **newcombe(
        _correct(champion), champion.labelled, _correct(challenger), challenger.labelled
    )}  # fmt: skip


def newcombe(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> dict[str, float | None]:
    """p_b - p_a with Newcombe's hybrid score interval (his method 10)."""
    a, b = wilson(successes_a, trials_a), wilson(successes_b, trials_b)
    if a["value"] is None or b["value"] is None:
        return {"value": None, "low": None, "high": None}
    pa, la, ua = a["value"], a["low"], a["high"]
    pb, lb, ub = b["value"], b["low"], b["high"]
    assert la is not None and ua is not None and lb is not None and ub is not None
    value = pb - pa
    low = value - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = value + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return {"value": value, "low": low, "high": high}


def _agreement(shadow: Totals, task: str) -> dict[str, Any]:
    if task == "regression":
        mean = shadow.difference_sum / shadow.compared if shadow.compared else None
        return {"compared": shadow.compared, "mean_abs_difference": mean}
    return {"compared": shadow.compared, **wilson(shadow.agreed, shadow.compared)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
