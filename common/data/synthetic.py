"""A synthetic churn dataset with drift injection, for demos and tests.

Eight mixed features and a learnable binary target. Each scenario changes the data
with an intensity per row: "sudden" switches it on at `drift_start`, "gradual" ramps
it from 0 there to 1 at the last row. Same arguments, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import InvalidInputError

TARGET = "churned"
MODES = ("sudden", "gradual")
# Population parameters of the baseline: the drifted data is measured against them.
NUMERIC = {
    "age": (45.0, 12.0),
    "income": (52000.0, 21000.0),
    "tenure_months": (24.0, 17.0),
    "monthly_spend": (70.0, 20.0),
    "support_calls": (1.5, 1.22),
    "usage_hours": (20.0, 6.0),
}
CATEGORIES = {
    "plan": (["basic", "standard", "premium"], [0.5, 0.3, 0.2]),
    "region": (["north", "south", "east", "west"], [0.3, 0.25, 0.25, 0.2]),
}
UNSEEN = {"plan": "enterprise", "region": "central"}
COEFFICIENTS = {
    "support_calls": 1.4,
    "tenure_months": -1.3,
    "monthly_spend": 0.8,
    "usage_hours": -0.7,
    "age": 0.15,
    "income": -0.3,
}
DRIFTED_COEFFICIENTS = {
    "support_calls": -0.6,
    "tenure_months": 0.7,
    "monthly_spend": -0.5,
    "usage_hours": 0.6,
    "age": 0.1,
    "income": 0.3,
}
PLAN_EFFECT = {"basic": 0.7, "standard": 0.0, "premium": -0.9}
INTERCEPT = -0.9
# "regime_change": a new market where churn follows another, strong relation.
REGIME_COEFFICIENTS = {name: 2.0 * w for name, w in DRIFTED_COEFFICIENTS.items()}
REGIME_PLAN_EFFECT = {plan: -effect for plan, effect in PLAN_EFFECT.items()}
REGIME_INTERCEPT = -0.4


def _baseline(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    data = {
        "age": np.clip(rng.normal(45, 12, rows), 18, 90).round(),
        "income": rng.lognormal(np.log(48000), 0.38, rows).round(2),
        "tenure_months": np.clip(rng.gamma(2.0, 12.0, rows), 0, 240).round(),
        "monthly_spend": np.clip(rng.normal(70, 20, rows), 0, None).round(2),
        "support_calls": rng.poisson(1.5, rows).astype(float),
        "usage_hours": np.clip(rng.normal(20, 6, rows), 0, None).round(2),
    }
    for name, (values, shares) in CATEGORIES.items():
        data[name] = rng.choice(values, size=rows, p=shares).astype(object)
    return pd.DataFrame(data)


def _logit(df: pd.DataFrame, coefficients: dict[str, float]) -> np.ndarray:
    z = np.full(len(df), INTERCEPT)
    for name, weight in coefficients.items():
        mean, std = NUMERIC[name]
        z += weight * (df[name].to_numpy(dtype=float) - mean) / std
    z += df["plan"].map(PLAN_EFFECT).fillna(0.0).to_numpy(dtype=float)
    z += 0.3 * (df["region"] == "south").to_numpy(dtype=float)
    return z


@dataclass(frozen=True)
class Drift:
    """What a scenario applies: per-row intensity `weight` (0-1), strength, features."""

    rng: np.random.Generator
    weight: np.ndarray
    magnitude: float
    features: tuple[str, ...]


Apply = Callable[[pd.DataFrame, Drift], np.ndarray]
"""Changes the inputs in place and returns the logit the labels are drawn from."""


def _no_change(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    return _logit(df, COEFFICIENTS)


def _mean_shift(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    for name in drift.features:
        df[name] = df[name] + drift.weight * drift.magnitude * NUMERIC[name][1]
    return _logit(df, COEFFICIENTS)


def _variance_change(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    for name in drift.features:
        mean = NUMERIC[name][0]
        df[name] = mean + (df[name] - mean) * (
            1.0 + (drift.magnitude - 1.0) * drift.weight
        )
    return _logit(df, COEFFICIENTS)


def _new_category(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    for name in drift.features:
        hit = drift.rng.random(len(df)) < drift.magnitude * drift.weight
        df.loc[hit, name] = UNSEEN[name]
    return _logit(df, COEFFICIENTS)


def _missing_spike(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    logit = _logit(df, COEFFICIENTS)  # labels are those of the complete rows
    for name in drift.features:
        hit = drift.rng.random(len(df)) < drift.magnitude * drift.weight
        df[name] = df[name].astype(object if name in CATEGORIES else float)
        df.loc[hit, name] = np.nan
    return logit


def _label_shift(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    return _logit(df, COEFFICIENTS) + drift.magnitude * drift.weight


def _concept_drift(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    mix = np.clip(drift.magnitude * drift.weight, 0.0, 1.0)
    return (1 - mix) * _logit(df, COEFFICIENTS) + mix * _logit(df, DRIFTED_COEFFICIENTS)


def _regime_change(df: pd.DataFrame, drift: Drift) -> np.ndarray:
    """Churn follows the new relation, measured against the new population, whose
    inputs have moved: the old model is mostly wrong, one retrained on recent
    labelled data is right again."""
    old = _logit(df, COEFFICIENTS)
    new = np.full(len(df), REGIME_INTERCEPT)
    for name, weight in REGIME_COEFFICIENTS.items():
        mean, std = NUMERIC[name]
        new += weight * (df[name].to_numpy(dtype=float) - mean) / std
    new += df["plan"].map(REGIME_PLAN_EFFECT).fillna(0.0).to_numpy(dtype=float)
    for name in drift.features:
        df[name] = df[name] + drift.weight * drift.magnitude * NUMERIC[name][1]
    return (1 - drift.weight) * old + drift.weight * new


@dataclass(frozen=True)
class Scenario:
    """A drift scenario: how it changes data, its defaults, what it may change."""

    apply: Apply
    features: tuple[str, ...]
    magnitude: float
    description: str
    allowed: tuple[str, ...] = ()


SCENARIOS: dict[str, Scenario] = {
    "baseline": Scenario(_no_change, (), 0.0, "training distribution, no drift"),
    "mean_shift": Scenario(
        _mean_shift,
        ("monthly_spend", "usage_hours", "age"),
        0.5,
        "mean moves by `magnitude` std",
        tuple(NUMERIC),
    ),
    "variance_change": Scenario(
        _variance_change,
        ("income", "tenure_months"),
        2.0,
        "spread around the mean multiplied by `magnitude`",
        tuple(NUMERIC),
    ),
    "new_category": Scenario(
        _new_category,
        ("region",),
        0.3,
        "share `magnitude` of an unseen category",
        tuple(CATEGORIES),
    ),
    "missing_spike": Scenario(
        _missing_spike,
        ("income", "usage_hours", "plan"),
        0.3,
        "share `magnitude` of values go missing",
        (*NUMERIC, *CATEGORIES),
    ),
    "label_shift": Scenario(
        _label_shift, (), 1.5, "churn odds raised by exp(`magnitude`), same inputs"
    ),
    "concept_drift": Scenario(
        _concept_drift, (), 1.0, "the feature-to-churn relation changes"
    ),
    "regime_change": Scenario(
        _regime_change,
        ("monthly_spend", "usage_hours", "tenure_months"),
        0.75,
        "inputs move by `magnitude` std and churn follows a new relation; "
        "a retrain on recent labelled data fixes it",
        tuple(NUMERIC),
    ),
}


def generate(
    scenario: str = "baseline",
    rows: int = 1000,
    seed: int = 0,
    *,
    mode: str = "sudden",
    drift_start: float = 0.0,
    magnitude: float | None = None,
    features: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Return `rows` rows of the scenario.

    Raises
    ------
    InvalidInputError
        Unknown scenario or mode, bad row count, drift_start outside [0, 1), or a
        feature the scenario cannot change.
    """
    spec = _check(scenario, rows, mode, drift_start, features)
    rng = np.random.default_rng(seed)
    df = _baseline(rng, rows)
    draws = rng.random(rows)  # drawn before any drift: undrifted rows match baseline
    drift = Drift(
        rng=np.random.default_rng([seed, 1]),
        weight=_intensity(rows, mode, drift_start),
        magnitude=spec.magnitude if magnitude is None else magnitude,
        features=spec.features if features is None else features,
    )
    logit = spec.apply(df, drift)
    df[TARGET] = (draws < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return df


def write(df: pd.DataFrame, out: Path) -> None:
    """Write CSV or Parquet by extension, byte-for-byte repeatable."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False, float_format="%.6g", lineterminator="\n")


def _check(
    scenario: str,
    rows: int,
    mode: str,
    drift_start: float,
    features: tuple[str, ...] | None,
) -> Scenario:
    if scenario not in SCENARIOS:
        raise InvalidInputError(
            f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}",
            field="scenario",
        )
    if mode not in MODES:
        raise InvalidInputError(
            f"mode must be sudden or gradual, got {mode!r}", field="mode"
        )
    if not 1 <= rows <= 10_000_000:
        raise InvalidInputError(
            f"rows must be 1 to 10,000,000, got {rows}", field="rows"
        )
    if not 0.0 <= drift_start < 1.0:
        raise InvalidInputError("drift_start must be in [0, 1)", field="drift_start")
    spec = SCENARIOS[scenario]
    bad = sorted(set(features or ()) - set(spec.allowed))
    if bad:
        raise InvalidInputError(
            f"scenario {scenario!r} cannot change {bad}; allowed: {list(spec.allowed)}",
            field="features",
        )
    return spec


def _intensity(rows: int, mode: str, drift_start: float) -> np.ndarray:
    position = np.arange(rows) / max(rows, 1)
    if mode == "sudden":
        return (position >= drift_start).astype(float)
    return np.clip((position - drift_start) / (1.0 - drift_start), 0.0, 1.0)
