"""Drift of recent inputs against a model's reference profile, one function per
statistic.

A feature drifts only when its effect size (PSI over the reference bins) is at least
`drift_psi_threshold` AND its test (KS for numbers, chi-squared for categories) is
significant after a Benjamini-Hochberg correction across features: large windows then
do not flag trivial shifts, and small windows do not flag noise. A window below
`drift_min_rows` reports insufficient data instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from common.config import Settings

EPSILON = 1e-4  # share given to an empty bin, so PSI stays finite
MISSING = "__missing__"
UNSEEN = "__unseen__"


@dataclass(frozen=True)
class DriftResult:
    """One statistic of one feature."""

    statistic: str
    score: float
    threshold: float
    drifted: bool


def compute_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.clip(np.asarray(reference, dtype=float), EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), EPSILON, None)
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_result(
    reference: np.ndarray, current: np.ndarray, threshold: float
) -> DriftResult:
    score = compute_psi(reference, current)
    return DriftResult("psi", score, threshold, bool(score >= threshold))


def ks_result(sample: np.ndarray, current: np.ndarray, alpha: float) -> DriftResult:
    """Two-sample Kolmogorov-Smirnov test of the current values against the
    reference's bounded sample, with the asymptotic p-value.

    The statistic is exact (for continuous data) and found in O(n log m): current
    values are counted between consecutive sample points instead of sorting them,
    since between two sample points the reference ECDF is flat and the gap is widest
    at an end of the interval.
    """
    points = np.sort(np.asarray(sample, dtype=float))
    m, n = len(points), len(current)
    if m == 0 or n == 0:
        return DriftResult("ks", 1.0, alpha, False)
    below = np.searchsorted(points, current, side="right")
    after = np.cumsum(np.bincount(below, minlength=m + 1)) / n  # share with <= k points
    before = np.concatenate([[0.0], after[:-1]])
    reference = np.arange(m + 1) / m
    statistic = max(np.abs(reference - before).max(), np.abs(reference - after).max())
    p_value = float(stats.kstwobign.sf(statistic * np.sqrt(m * n / (m + n))))
    return DriftResult("ks", p_value, alpha, p_value < alpha)


def chi2_result(
    reference_counts: np.ndarray, current_counts: np.ndarray, alpha: float
) -> DriftResult:
    """Chi-squared test of homogeneity of two count vectors (unseen bins included)."""
    table = np.vstack([reference_counts, current_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return DriftResult("chi2", 1.0, alpha, False)
    p_value = float(stats.chi2_contingency(table, correction=False).pvalue)
    return DriftResult("chi2", p_value, alpha, p_value < alpha)


DRIFT_TESTS: dict[str, Callable[..., DriftResult]] = {
    "psi": psi_result,
    "ks": ks_result,
    "chi2": chi2_result,
}


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    psi: float
    p_value: float
    p_adjusted: float
    test: str
    drifted: bool
    missing_rate: float
    reference_missing_rate: float
    unseen_rate: float | None = None


def check_drift(
    profile: dict[str, Any],
    current: pd.DataFrame,
    predictions: pd.Series | None,
    settings: Settings,
) -> dict[str, Any]:
    """Compare a window of recent inputs with the reference profile.

    Returns a report: `status` ("ok", "drift" or "insufficient_data"), per-feature
    results, prediction drift, the share of drifted features and `dataset_drift`.
    """
    rows = len(current)
    if rows < settings.drift_min_rows:
        return {
            "status": "insufficient_data",
            "window_size": rows,
            "min_rows": settings.drift_min_rows,
            "features": {},
            "drift_share": None,
            "dataset_drift": False,
        }
    specs = {n: spec for n, spec in profile["features"].items() if n in current}
    reference_rows = max(int(profile.get("rows", 1)), 1)
    partial = [
        _feature(n, spec, current[n], reference_rows, settings)
        for n, spec in specs.items()
    ]
    adjusted = (
        stats.false_discovery_control([f["p_value"] for f in partial])
        if partial
        else []
    )
    features = {}
    for item, p_adjusted in zip(partial, adjusted, strict=True):
        significant = bool(p_adjusted < settings.drift_alpha)
        large = bool(item["psi"] >= settings.drift_psi_threshold)
        features[item["name"]] = asdict(
            FeatureDrift(
                **item, p_adjusted=float(p_adjusted), drifted=significant and large
            )
        )
    drifted = [name for name, f in features.items() if f["drifted"]]
    share = len(drifted) / len(features) if features else 0.0
    dataset_drift = share >= settings.drift_share_threshold
    return {
        "status": "drift" if drifted else "ok",
        "window_size": rows,
        "features": features,
        "drifted_features": drifted,
        "drift_share": share,
        "dataset_drift": dataset_drift,
        "prediction": _prediction_drift(profile, predictions, settings),
        "thresholds": {
            "psi": settings.drift_psi_threshold,
            "alpha": settings.drift_alpha,
            "share": settings.drift_share_threshold,
        },
    }


def _feature(
    name: str,
    spec: dict[str, Any],
    column: pd.Series,
    reference_rows: int,
    settings: Settings,
) -> dict[str, Any]:
    missing = column.isna().to_numpy()
    present = column[~missing]
    ref_missing = float(spec.get("missing_rate", 0.0))
    common = {
        "name": name,
        "kind": spec["type"],
        "missing_rate": float(missing.mean()),
        "reference_missing_rate": ref_missing,
    }
    if spec["type"] == "number":
        values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
        cuts = np.asarray(spec["cut_points"], dtype=float)
        counts = np.bincount(
            np.searchsorted(cuts, values, side="right"), minlength=len(cuts) + 1
        )
        ref = np.append(
            np.asarray(spec["frequencies"]) * (1 - ref_missing), ref_missing
        )
        cur = np.append(counts, missing.sum()) / max(len(column), 1)
        shape = (
            ks_result(
                np.asarray(spec["sample"], dtype=float), values, settings.drift_alpha
            )
            if len(values)
            else None
        )
        presence = chi2_result(
            np.array([1 - ref_missing, ref_missing]) * reference_rows,
            np.array([len(values), missing.sum()]),
            settings.drift_alpha,
        )
        # Either the shape of the present values or the share of missing ones may
        # move; Bonferroni over the two tests keeps the false-alarm rate.
        p_value = min(1.0, 2 * min(shape.score if shape else 1.0, presence.score))
        return {
            **common,
            "psi": compute_psi(ref, cur),
            "p_value": p_value,
            "test": "ks+missing",
        }
    categories = list(spec["frequencies"])
    observed = present.astype(str).value_counts()
    unseen = int(observed.drop(labels=categories, errors="ignore").sum())
    cur_counts = np.array(
        [observed.get(c, 0) for c in categories] + [unseen, missing.sum()]
    )
    seen = [spec["frequencies"][c] * (1 - ref_missing) for c in categories]
    ref_shares = np.array([*seen, 0.0, ref_missing])
    test = chi2_result(ref_shares * reference_rows, cur_counts, settings.drift_alpha)
    return {
        **common,
        "psi": compute_psi(ref_shares, cur_counts / max(len(column), 1)),
        "p_value": test.score,
        "test": "chi2",
        "unseen_rate": unseen / max(len(column), 1),
    }


def _prediction_drift(
    profile: dict[str, Any], predictions: pd.Series | None, settings: Settings
) -> dict[str, Any] | None:
    reference = profile.get("predictions") or {}
    if predictions is None or not reference or predictions.empty:
        return None
    if reference.get("type") == "number":  # a regressor's predicted values
        values = pd.to_numeric(predictions, errors="coerce")
        item = _feature("prediction", reference, values,
                        max(int(profile.get("rows", 1)), 1), settings)  # fmt: skip
        drifted = (item["psi"] >= settings.drift_psi_threshold
                   and item["p_value"] < settings.drift_alpha)  # fmt: skip
        return {"psi": item["psi"], "p_value": item["p_value"],
                "drifted": bool(drifted), "kind": "number"}  # fmt: skip
    shares = predictions.astype(str).value_counts(normalize=True)
    classes = sorted(set(reference) | set(shares.index))
    result = psi_result(
        np.array([reference.get(c, 0.0) for c in classes]),
        np.array([shares.get(c, 0.0) for c in classes]),
        settings.drift_psi_threshold,
    )
    return {"psi": result.score, "drifted": result.drifted}
