from __future__ import annotations

import numpy as np
import pytest

from common.data import synthetic
from common.errors import InvalidInputError
from common.models.training import ModelTrainer


def test_same_seed_same_bytes(tmp_path):
    for name in ("a.csv", "b.csv"):
        synthetic.write(
            synthetic.generate("missing_spike", 500, 11, mode="gradual"),
            tmp_path / name,
        )
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    synthetic.write(synthetic.generate("missing_spike", 500, 12), tmp_path / "c.csv")
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


@pytest.mark.parametrize("scenario", list(synthetic.SCENARIOS))
@pytest.mark.parametrize("mode", synthetic.MODES)
def test_every_scenario_and_mode_yields_mixed_features_and_a_target(scenario, mode):
    df = synthetic.generate(scenario, 300, 1, mode=mode)
    assert len(df) == 300
    assert {"age", "income", "plan", "region", synthetic.TARGET} <= set(df.columns)
    assert set(df[synthetic.TARGET].unique()) == {0, 1}


def test_rows_before_the_drift_point_are_baseline():
    base = synthetic.generate("baseline", 1000, 5)
    drifted = synthetic.generate("mean_shift", 1000, 5, drift_start=0.5)
    assert base.iloc[:500].equals(drifted.iloc[:500])
    assert not base.iloc[500:].equals(drifted.iloc[500:])


def test_mean_shift_moves_means_by_the_magnitude_in_std():
    base = synthetic.generate("baseline", 20000, 3)
    shifted = synthetic.generate("mean_shift", 20000, 3, magnitude=0.5)
    for name in synthetic.SCENARIOS["mean_shift"].features:
        std = synthetic.NUMERIC[name][1]
        assert (shifted[name].mean() - base[name].mean()) / std == pytest.approx(
            0.5, abs=0.01
        )
    assert shifted["income"].equals(base["income"])


def test_variance_change_doubles_spread():
    base = synthetic.generate("baseline", 20000, 3)
    wide = synthetic.generate("variance_change", 20000, 3)
    assert wide["tenure_months"].std() / base["tenure_months"].std() == pytest.approx(
        2, rel=0.02
    )


def test_gradual_drift_grows_along_the_file():
    df = synthetic.generate("missing_spike", 20000, 3, mode="gradual")
    first, last = df.iloc[:2000], df.iloc[-2000:]
    assert first["income"].isna().mean() < 0.05 < 0.25 < last["income"].isna().mean()


def test_new_category_and_label_shift_change_what_they_name():
    df = synthetic.generate("new_category", 5000, 3)
    assert (df["region"] == "central").mean() == pytest.approx(0.3, abs=0.03)
    base = synthetic.generate("baseline", 5000, 3)
    shifted = synthetic.generate("label_shift", 5000, 3)
    assert shifted["churned"].mean() > base["churned"].mean() + 0.15
    assert shifted.drop(columns="churned").equals(base.drop(columns="churned"))


def test_concept_drift_breaks_a_model_trained_on_baseline(settings):
    trainer = ModelTrainer(settings)
    result = trainer.train_model(
        synthetic.generate("baseline", 3000, 1), "churned", "logistic_regression"
    )
    for scenario, expected_drop in (("baseline", False), ("concept_drift", True)):
        df = synthetic.generate(scenario, 3000, 2)
        accuracy = (
            result.pipeline.predict(df.drop(columns="churned")) == df["churned"]
        ).mean()
        assert bool(accuracy < result.metrics.accuracy - 0.15) is expected_drop, (
            accuracy
        )


def test_regime_change_breaks_the_old_model_and_a_retrain_on_recent_rows_fixes_it(
    settings,
):
    trainer = ModelTrainer(settings)
    old = trainer.train_model(
        synthetic.generate("baseline", 3000, 1), "churned", "logistic_regression"
    )
    recent = trainer.train_model(
        synthetic.generate("regime_change", 500, 2), "churned", "logistic_regression"
    )
    live = synthetic.generate("regime_change", 3000, 3)
    X, y = live.drop(columns="churned"), live["churned"]
    majority = max(y.mean(), 1 - y.mean())
    assert (old.pipeline.predict(X) == y).mean() < 0.4
    assert (recent.pipeline.predict(X) == y).mean() > majority + 0.1
    base = synthetic.generate("baseline", 3000, 3)
    for name in synthetic.SCENARIOS["regime_change"].features:
        moved = (live[name].mean() - base[name].mean()) / synthetic.NUMERIC[name][1]
        assert moved == pytest.approx(0.75, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "tsunami"}, "unknown scenario"),
        ({"mode": "slow"}, "sudden or gradual"),
        ({"rows": 0}, "rows must be"),
        ({"drift_start": 1.0}, "drift_start"),
        ({"scenario": "mean_shift", "features": ("plan",)}, "cannot change"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        synthetic.generate(**kwargs)


def test_baseline_is_learnable_well_above_chance(settings):
    df = synthetic.generate("baseline", 4000, 9)
    result = ModelTrainer(settings).train_model(df, "churned", "logistic_regression")
    assert (
        result.metrics.accuracy
        > max(np.mean(df.churned), 1 - np.mean(df.churned)) + 0.1
    )
