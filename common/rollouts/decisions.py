"""The monitor's verdict on a running rollout, from its live comparison and criteria.

In order: a challenger whose errors or latency break the limits is aborted; one that
is worse than the accepted drop with 95% confidence is aborted; one whose arms both
have `min_labels` labelled requests and whose drop is, with 95% confidence, no larger
than accepted is promoted. A canary or shadow is watched sequentially (decided as
soon as the evidence is clear either way); an A/B test is a fixed-sample experiment,
decided once both arms reached `min_labels`: promoted if the evidence holds, else
aborted as inconclusive. Whatever is still undecided at `max_duration_minutes` is
aborted: the champion stays.

Looking at the intervals again and again raises the chance of a wrong call above 5%;
the limits in `Criteria` (a tolerated drop, a minimum of labels) are what keep it
small in practice, and every decision records the evidence it was made on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.clock import as_utc
from common.rollouts.criteria import Criteria
from common.storage.tables import Rollout

MIN_REQUESTS_FOR_LATENCY = 100  # per arm, before a p99 means anything


@dataclass(frozen=True)
class Verdict:
    """What the monitor does now: `promote`, `abort` or `continue`, and why."""

    decision: str
    criterion: str | None
    reason: str


def judge(
    rollout: Rollout, comparison: dict[str, Any], criteria: Criteria, now: datetime
) -> Verdict:
    """The verdict on `rollout` given its `comparison` (common.rollouts.comparison)."""
    champion, challenger = (
        comparison["arms"]["champion"],
        comparison["arms"]["challenger"],
    )
    errors = challenger["error_rate"]
    if errors["low"] is not None and errors["low"] > criteria.max_error_rate:
        return Verdict(
            "abort",
            "max_error_rate",
            (
                f"the challenger failed {challenger['errors']} of "
                f"{challenger['requests']} requests ({errors['value']:.1%}; at least "
                f"{errors['low']:.1%} with 95% confidence, above the "
                f"{criteria.max_error_rate:.1%} allowed)"
            ),
        )
    ratio = comparison["p99_ratio"]
    if (
        rollout.mode != "shadow"
        and ratio is not None
        and min(champion["requests"], challenger["requests"])
        >= MIN_REQUESTS_FOR_LATENCY
        and ratio > criteria.max_p99_ratio
    ):
        return Verdict(
            "abort",
            "max_p99_ratio",
            (
                f"the challenger's p99 latency is {ratio:.2f} times the champion's "
                f"(at most {criteria.max_p99_ratio:g} allowed)"
            ),
        )
    worse, better, what = _quality(comparison, criteria)
    labelled = min(champion["labelled"], challenger["labelled"])
    enough = labelled >= criteria.min_labels
    if worse:
        return Verdict("abort", _quality_criterion(comparison), f"worse: {what}")
    if enough and better:
        return Verdict(
            "promote",
            "min_labels",
            (f"{labelled} labelled requests per arm at least, and {what}"),
        )
    if enough and rollout.mode == "ab":
        return Verdict(
            "abort",
            "min_labels",
            (
                f"the A/B test reached {criteria.min_labels} labelled requests per arm "
                f"without showing the challenger good enough: {what}"
            ),
        )
    minutes = (as_utc(now) - as_utc(rollout.started_at)).total_seconds() / 60
    if minutes >= criteria.max_duration_minutes:
        return Verdict(
            "abort",
            "max_duration_minutes",
            (
                f"undecided after {minutes:.0f} minutes (at most "
                f"{criteria.max_duration_minutes:g}): {what}"
            ),
        )
    return Verdict(
        "continue",
        None,
        (f"{labelled} of {criteria.min_labels} labelled requests per arm; {what}"),
    )


def _quality_criterion(comparison: dict[str, Any]) -> str:
    if comparison["task"] == "regression":
        return "max_error_increase"
    return "max_accuracy_drop"


def _quality(comparison: dict[str, Any], criteria: Criteria) -> tuple[bool, bool, str]:
    """(worse with confidence, good enough with confidence, the evidence in words)."""
    difference = comparison["difference"]
    if difference["value"] is None:
        return False, False, "no labelled requests on both arms yet"
    low, high = difference["low"], difference["high"]
    if comparison["task"] == "regression":
        base = comparison["arms"]["champion"]["mae"]["value"] or 0.0
        allowed = criteria.max_error_increase * base
        words = (
            f"MAE {difference['value']:+.4g} against the champion (95% interval "
            f"{low:+.4g} to {high:+.4g}; at most +{allowed:.4g} accepted)"
        )
        return low > allowed, high <= allowed, words
    drop = criteria.max_accuracy_drop
    words = (
        f"accuracy {difference['value']:+.1%} against the champion (95% interval "
        f"{low:+.1%} to {high:+.1%}; a drop of at most {drop:.1%} accepted)"
    )
    return high < -drop, low >= -drop, words
