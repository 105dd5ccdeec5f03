from __future__ import annotations

import numpy as np
import pytest

from common.config import MODEL_TYPES
from common.errors import InvalidInputError, UnprocessableDataError
from common.models.schemas import ModelMetadata, PerformanceMetrics, PredictionLog
from common.models.training import ModelTrainer
from tests.factories import train_result


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_model_type_learns_the_synthetic_target(settings, churn_frame, model_type):
    result = train_result(settings, churn_frame, "churned", model_type=model_type)
    base_rate = churn_frame["churned"].value_counts(normalize=True).max()
    assert result.metrics.accuracy > base_rate  # better than always guessing
    assert 0 < result.metrics.f1_score <= 1
    assert result.classes == [0, 1]
    assert result.training_data_size + result.holdout_size == len(churn_frame)


def test_report_has_per_class_metrics_and_confusion_matrix(settings, churn_frame):
    result = train_result(settings, churn_frame, "churned")
    metrics = result.metrics
    assert set(metrics.per_class) == {"0", "1"}
    assert np.array(metrics.confusion_matrix).sum() == result.holdout_size
    trace = np.trace(np.array(metrics.confusion_matrix))
    assert metrics.accuracy == pytest.approx(trace / result.holdout_size)


def test_holdout_is_stratified(settings, churn_frame):
    result = train_result(settings, churn_frame, "churned")
    holdout_share = (
        np.array(result.metrics.confusion_matrix).sum(axis=1)[1] / result.holdout_size
    )
    assert holdout_share == pytest.approx(churn_frame["churned"].mean(), abs=0.02)


def test_same_seed_gives_the_same_model(settings, churn_frame):
    first = train_result(settings, churn_frame, "churned", model_type="random_forest")
    second = train_result(settings, churn_frame, "churned", model_type="random_forest")
    X = churn_frame.drop(columns="churned")
    np.testing.assert_array_equal(
        first.pipeline.predict_proba(X), second.pipeline.predict_proba(X)
    )
    assert first.metrics == second.metrics
    assert first.data_fingerprint == second.data_fingerprint


def test_pipeline_takes_raw_feature_values(settings, churn_frame):
    result = train_result(settings, churn_frame, "churned")
    raw = churn_frame.drop(columns="churned").head(3).copy()
    raw.loc[raw.index[0], "region"] = "atlantis"  # unseen category
    raw.loc[raw.index[1], "income"] = None  # missing value
    assert result.pipeline.predict_proba(raw).shape == (3, 2)


def test_unknown_model_type_and_parameters_are_refused(settings, churn_frame):
    trainer = ModelTrainer(settings)
    with pytest.raises(InvalidInputError, match="unknown model type 'svm'"):
        trainer.train_model(churn_frame, "churned", "svm")
    with pytest.raises(InvalidInputError, match="n_trees") as caught:
        trainer.train_model(churn_frame, "churned", "random_forest", {"n_trees": 5})
    assert "n_estimators" in caught.value.details["allowed"]


def test_invalid_parameter_value_is_an_input_error(settings, churn_frame):
    with pytest.raises(InvalidInputError, match="invalid parameters"):
        ModelTrainer(settings).train_model(
            churn_frame, "churned", "random_forest", {"n_estimators": -3}
        )


def test_bad_dataset_fails_before_fitting_with_every_problem(settings, churn_frame):
    progress = []
    with pytest.raises(UnprocessableDataError) as caught:
        ModelTrainer(settings).train_model(
            churn_frame.head(20).assign(churned=1),
            "churned",
            progress=lambda pct, stage: progress.append(stage),
        )
    codes = {p["code"] for p in caught.value.details["problems"]}
    assert codes == {"too_few_rows", "one_class"}
    assert "fitting logistic_regression" not in progress


def test_training_reports_progress_up_to_100(settings, churn_frame):
    seen = []
    train_result(settings, churn_frame, "churned", progress=lambda p, s: seen.append(p))
    assert seen == sorted(seen) and seen[-1] == 100


def test_profile_summarises_every_feature(settings, churn_frame):
    result = train_result(settings, churn_frame, "churned")
    profile = result.reference_profile
    assert set(profile["features"]) == set(result.feature_names)
    age = profile["features"]["age"]
    assert len(age["frequencies"]) == len(age["cut_points"]) + 1
    assert sum(age["frequencies"]) == pytest.approx(1.0)
    assert len(age["sample"]) == min(
        settings.profile_sample_size, result.training_data_size
    )
    plan = profile["features"]["plan"]
    assert set(plan["frequencies"]) == {"basic", "standard", "premium"}
    assert sum(profile["predictions"].values()) == pytest.approx(1.0)


def test_seed_data_classes_have_their_fields():
    assert {
        "model_id",
        "version",
        "created_at",
        "accuracy",
        "f1_score",
        "training_data_size",
        "feature_names",
        "model_type",
    } <= set(ModelMetadata.__dataclass_fields__)
    assert {
        "timestamp",
        "features",
        "prediction",
        "confidence",
        "model_version",
        "response_time_ms",
        "prediction_id",
    } <= set(PredictionLog.__dataclass_fields__)
    assert {
        "accuracy",
        "precision",
        "recall",
        "f1_score",
        "prediction_count",
        "avg_response_time",
        "error_rate",
        "timestamp",
    } <= set(PerformanceMetrics.__dataclass_fields__)
