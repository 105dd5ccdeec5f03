"""The reference profile written at training time, so drift checks never reload data.

Numeric features keep quantile cut points with bin frequencies and a bounded sample;
categorical features keep category frequencies; predictions keep class shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from common.models.schemas import FeatureSpec

PROFILE_FORMAT = 1


def build_reference_profile(
    X: pd.DataFrame,
    schema: list[FeatureSpec],
    predictions: Any,
    *,
    bins: int,
    sample_size: int,
    random_state: int,
    task: str = "classification",
) -> dict[str, Any]:
    """Summarise `X` (and the model's `predictions` on it) for later drift checks:
    a classifier's class shares, or a regressor's predicted values as a number."""
    rng = np.random.default_rng(random_state)
    features: dict[str, Any] = {}
    for spec in schema:
        column = X[spec.name]
        missing_rate = float(column.isna().mean())
        if spec.type == "number":
            features[spec.name] = _numeric_profile(column, bins, sample_size, rng)
        else:
            features[spec.name] = {"type": "category", **_frequencies(column)}
        features[spec.name]["missing_rate"] = missing_rate
    return {
        "format": PROFILE_FORMAT,
        "rows": len(X),
        "features": features,
        "predictions": _prediction_profile(predictions, task, bins, sample_size, rng),
    }


def _prediction_profile(
    predictions: Any, task: str, bins: int, sample_size: int, rng: np.random.Generator
) -> dict[str, Any]:
    if task == "regression":
        values = pd.Series(np.asarray(predictions, dtype=float))
        return {**_numeric_profile(values, bins, sample_size, rng), "missing_rate": 0.0}
    return dict(_frequencies(pd.Series(predictions))["frequencies"])


def _numeric_profile(
    column: pd.Series, bins: int, sample_size: int, rng: np.random.Generator
) -> dict[str, Any]:
    values = column.dropna().to_numpy(dtype=float)
    cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1])
    counts = np.bincount(
        np.searchsorted(cuts, values, side="right"), minlength=len(cuts) + 1
    )
    take = min(sample_size, len(values))
    sample = rng.choice(values, size=take, replace=False) if take else values
    return {
        "type": "number",
        "cut_points": cuts.tolist(),
        "frequencies": (counts / max(len(values), 1)).tolist(),
        "sample": np.sort(sample).tolist(),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def _frequencies(column: pd.Series) -> dict[str, Any]:
    shares = column.dropna().astype(str).value_counts(normalize=True).sort_index()
    return {"frequencies": {str(k): float(v) for k, v in shares.items()}}


def sample_rows(
    profile: dict[str, Any], columns: list[str], rows: int, seed: int
) -> pd.DataFrame:
    """Rows like the reference a profile describes: each numeric feature drawn from
    its kept sample, each category by its share, missing values at their rate. The
    features are drawn independently (a profile keeps no joint distribution)."""
    rng = np.random.default_rng(seed)
    drawn: dict[str, Any] = {}
    for name in columns:  # the model's order (a JSON column need not keep it)
        spec = profile["features"][name]
        if spec["type"] == "number":
            sample = np.asarray(spec["sample"], dtype=float)
            values: np.ndarray = rng.choice(sample, rows)
        else:
            shares = spec["frequencies"]
            weights = np.asarray(list(shares.values()), dtype=float)
            values = rng.choice(np.asarray(list(shares), dtype=object), rows,
                                p=weights / weights.sum())  # fmt: skip
        missing = rng.random(rows) < float(spec.get("missing_rate", 0.0))
        drawn[name] = pd.Series(values).mask(missing)
    return pd.DataFrame(drawn)
