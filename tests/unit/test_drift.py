from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.config import Settings
from common.data import synthetic
from common.models.training import ModelTrainer
from common.monitoring.drift import DRIFT_TESTS, check_drift, compute_psi

MEAN_SHIFTED = ("monthly_spend", "usage_hours", "age")
WIDENED = ("income", "tenure_months")


@pytest.fixture(scope="module")
def reference():
    settings = Settings(home="/tmp/modelops-drift-tests")
    result = ModelTrainer(settings).train_model(
        synthetic.generate("baseline", 5000, 1), "churned", "logistic_regression"
    )
    return settings, result.reference_profile, [f.name for f in result.input_schema]


def _window(seed, rows, features):
    return synthetic.generate("baseline", rows, seed)[features]


def test_psi_golden_values():
    assert compute_psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert compute_psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(
        0.2282, abs=1e-4
    )
    assert compute_psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        0.7124, abs=1e-4
    )


def test_each_statistic_returns_a_result_against_its_threshold():
    rng = np.random.default_rng(0)
    same = DRIFT_TESTS["ks"](rng.normal(size=1000), rng.normal(size=5000), 0.01)
    moved = DRIFT_TESTS["ks"](rng.normal(size=1000), rng.normal(0.5, size=5000), 0.01)
    assert (same.statistic, same.drifted, moved.drifted) == ("ks", False, True)
    assert moved.score < 1e-10 and same.threshold == 0.01
    chi = DRIFT_TESTS["chi2"](np.array([500, 500, 0]), np.array([450, 450, 100]), 0.01)
    assert chi.drifted and chi.statistic == "chi2"
    psi = DRIFT_TESTS["psi"](np.array([0.25] * 4), np.array([0.1, 0.2, 0.3, 0.4]), 0.1)
    assert psi.drifted and psi.score == pytest.approx(0.2282, abs=1e-4)


@pytest.mark.parametrize("rows", [1000, 50_000])
def test_baseline_against_baseline_raises_at_most_one_percent_false_alarms(
    reference, rows
):
    settings, profile, features = reference
    alarms = checks = 0
    for seed in range(100, 200):
        report = check_drift(profile, _window(seed, rows, features), None, settings)
        alarms += len(report["drifted_features"])
        checks += len(report["features"])
    assert checks == 100 * len(features)
    assert alarms / checks <= 0.01


def test_half_sd_shifts_and_doubled_variance_flag_exactly_those_five(reference):
    settings, profile, features = reference
    for seed in range(300, 320):
        window = _window(seed, 1000, features)
        for name in MEAN_SHIFTED:
            window[name] += 0.5 * synthetic.NUMERIC[name][1]
        for name in WIDENED:
            mean = synthetic.NUMERIC[name][0]
            window[name] = mean + (window[name] - mean) * 2
        report = check_drift(profile, window, None, settings)
        assert sorted(report["drifted_features"]) == sorted(MEAN_SHIFTED + WIDENED)
        assert report["dataset_drift"] is True and report["status"] == "drift"


def test_unseen_categories_and_missing_values_are_drift(reference):
    settings, profile, features = reference
    new_region = synthetic.generate("new_category", 2000, 5)[features]
    report = check_drift(profile, new_region, None, settings)
    assert report["drifted_features"] == ["region"]
    assert report["features"]["region"]["unseen_rate"] == pytest.approx(0.3, abs=0.03)
    holes = synthetic.generate("missing_spike", 2000, 5)[features]
    report = check_drift(profile, holes, None, settings)
    assert sorted(report["drifted_features"]) == ["income", "plan", "usage_hours"]
    assert report["features"]["income"]["missing_rate"] == pytest.approx(0.3, abs=0.03)


def test_a_small_window_reports_insufficient_data(reference):
    settings, profile, features = reference
    report = check_drift(profile, _window(1, 150, features), None, settings)
    assert report["status"] == "insufficient_data" and report["features"] == {}
    assert report["min_rows"] == settings.drift_min_rows


def test_prediction_drift_compares_predicted_class_shares(reference):
    settings, profile, features = reference
    window = _window(2, 1000, features)
    steady = pd.Series(
        np.where(np.arange(1000) < 1000 * profile["predictions"]["1"], 1, 0)
    )
    assert (
        check_drift(profile, window, steady, settings)["prediction"]["drifted"] is False
    )
    flipped = pd.Series(np.ones(1000, dtype=int))
    result = check_drift(profile, window, flipped, settings)["prediction"]
    assert result["drifted"] is True and result["psi"] > 1


def test_ks_statistic_matches_scipy_without_sorting_the_window():
    from scipy import stats

    rng = np.random.default_rng(3)
    sample = rng.normal(size=1000)
    for shift in (0.0, 0.05, 0.3):
        window = rng.normal(shift, size=50_000)
        ours = DRIFT_TESTS["ks"](sample, window, 0.01)
        theirs = stats.ks_2samp(sample, window, method="asymp")
        assert ours.score == pytest.approx(theirs.pvalue, rel=0.1, abs=1e-12)
