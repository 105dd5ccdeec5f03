"""Training: a dataset in; a fitted pipeline with schema, profile and metrics out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from common.config import MODEL_TYPES, Settings
from common.data.processing import DataProcessor, coerce_features, fingerprint_data
from common.errors import InvalidInputError
from common.jobs.progress import ProgressCallback, ignore_progress
from common.models.evaluation import EvaluationReport, ModelEvaluator, to_plain
from common.models.profile import build_reference_profile
from common.models.schemas import FeatureSpec

log = logging.getLogger(__name__)

ESTIMATORS: dict[str, Callable[[], ClassifierMixin]] = {
    "logistic_regression": lambda: LogisticRegression(max_iter=1000),
    "random_forest": lambda: RandomForestClassifier(n_estimators=100, n_jobs=1),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(),
}
assert tuple(ESTIMATORS) == MODEL_TYPES


@dataclass(frozen=True)
class ModelResult:
    """A fitted pipeline and everything the registry records beside it."""

    pipeline: Pipeline
    model_type: str
    params: dict[str, Any]
    target: str
    feature_names: list[str]
    classes: list[Any]
    input_schema: list[FeatureSpec]
    reference_profile: dict[str, Any]
    metrics: EvaluationReport
    training_data_size: int
    holdout_size: int
    data_fingerprint: str
    dataset: str | None
    holdout_X: pd.DataFrame  # kept in memory for gating, never persisted
    holdout_y: pd.Series


def build_estimator(model_type: str, params: dict[str, Any], random_state: int) -> Any:
    """Return an unfitted estimator with `params` set.

    Raises
    ------
    InvalidInputError
        For an unknown model type or unknown parameter names.
    """
    if model_type not in ESTIMATORS:
        raise InvalidInputError(
            f"unknown model type {model_type!r}; choose one of {', '.join(ESTIMATORS)}",
            field="model_type",
        )
    estimator = ESTIMATORS[model_type]()
    known = set(estimator.get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown parameters for {model_type}: {unknown}",
            field="params",
            allowed=sorted(known),
        )
    return estimator.set_params(**{"random_state": random_state, **params})


class ModelTrainer:
    """Trains one of the supported model types with a stratified holdout."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processor = DataProcessor(settings)
        self.evaluator = ModelEvaluator()

    def train_model(
        self,
        data: str | Path | pd.DataFrame,
        target: str,
        model_type: str = "random_forest",
        params: dict[str, Any] | None = None,
        *,
        dataset: str | None = None,
        schema: list[FeatureSpec] | None = None,
        progress: ProgressCallback = ignore_progress,
    ) -> ModelResult:
        """Validate, split, fit, evaluate and profile.

        Raises
        ------
        InvalidInputError
            Bad model type or parameters, or an unreadable file.
        UnprocessableDataError
            The data fails validation; every problem is listed.
        """
        params = dict(params or {})
        estimator = build_estimator(model_type, params, self.settings.random_state)
        progress(5, "loading data")
        if not isinstance(data, pd.DataFrame):
            dataset = dataset or str(data)
            data = self.processor.load_data(data)
        progress(15, "validating data")
        validation = self.processor.validate_data(data, target, schema)
        validation.raise_for_problems(dataset or "dataset")
        data = data.dropna(subset=[target])
        input_schema = validation.schema
        X = coerce_features(data, input_schema)
        y = data[target]
        progress(25, "splitting holdout")
        X_train, X_test, y_train, y_test = train_test_split(
            X,
            y,
            test_size=self.settings.test_size,
            stratify=y,
            random_state=self.settings.random_state,
        )
        pipeline = Pipeline(
            [
                ("preprocess", self.processor.preprocess(input_schema)),
                ("model", estimator),
            ]
        )
        progress(35, f"fitting {model_type}")
        try:
            pipeline.fit(X_train, y_train)
        except InvalidParameterError as exc:
            raise InvalidInputError(
                f"invalid parameters: {exc}", field="params"
            ) from exc
        progress(80, "evaluating")
        metrics = self.evaluator.evaluate(pipeline, X_test, y_test)
        progress(90, "profiling reference data")
        profile = build_reference_profile(
            X_train,
            input_schema,
            pipeline.predict(X_test),
            bins=self.settings.profile_bins,
            sample_size=self.settings.profile_sample_size,
            random_state=self.settings.random_state,
        )
        log.info(
            "trained model_type=%s rows=%d accuracy=%.4f f1=%.4f",
            model_type,
            len(X_train),
            metrics.accuracy,
            metrics.f1_score,
        )
        progress(100, "trained")
        return ModelResult(
            pipeline=pipeline,
            model_type=model_type,
            params=params,
            target=target,
            feature_names=[spec.name for spec in input_schema],
            classes=[to_plain(c) for c in pipeline.classes_],
            input_schema=input_schema,
            reference_profile=profile,
            metrics=metrics,
            training_data_size=len(X_train),
            holdout_size=len(X_test),
            data_fingerprint=fingerprint_data(data),
            dataset=dataset,
            holdout_X=X_test,
            holdout_y=y_test,
        )
