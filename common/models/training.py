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
from common.errors import InvalidInputError, UnprocessableDataError
from common.jobs.progress import ProgressCallback, ignore_progress
from common.models.evaluation import (
    EvaluationReport,
    ModelEvaluator,
    RegressionReport,
    evaluate_regression,
)
from common.models.prediction import to_plain
from common.models.profile import build_reference_profile
from common.models.schemas import FeatureSpec

log = logging.getLogger(__name__)

ESTIMATORS: dict[str, Callable[[], ClassifierMixin]] = {
    "logistic_regression": lambda: LogisticRegression(max_iter=1000),
    "random_forest": lambda: RandomForestClassifier(n_estimators=100, n_jobs=1),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(),
}
assert tuple(ESTIMATORS) == MODEL_TYPES
TREE_MODELS = frozenset({"random_forest", "hist_gradient_boosting"})  # need no scaling


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
    metrics: EvaluationReport | RegressionReport
    training_data_size: int
    holdout_size: int
    data_fingerprint: str
    dataset: str | None
    holdout_X: pd.DataFrame  # kept in memory for gating, never persisted
    holdout_y: pd.Series
    task: str = "classification"
    source: dict[str, Any] | None = None  # where a retrain takes its base data
    provenance: dict[str, Any] | None = None  # a registered file: format, sha256


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
        estimator: Any = None,
        task: str = "classification",
    ) -> ModelResult:
        """Validate, split, fit, evaluate and profile.

        With `estimator` (an unfitted clone of a user's pipeline) that is what is
        fitted, as it is: it brings its own preprocessing. Otherwise `model_type`
        with `params`, behind ModelOps' preprocessing.

        Raises
        ------
        InvalidInputError
            Bad model type or parameters, or an unreadable file.
        UnprocessableDataError
            The data fails validation; every problem is listed, or the user's
            estimator cannot be fitted on it.
        """
        params = dict(params or {})
        own = estimator is None
        if own:
            estimator = build_estimator(model_type, params, self.settings.random_state)
        progress(5, "loading data")
        if not isinstance(data, pd.DataFrame):
            dataset = dataset or str(data)
            data = self.processor.load_data(data)
        progress(15, "validating data")
        validation = self.processor.validate_data(data, target, schema, task=task)
        validation.raise_for_problems(dataset or "dataset")
        data = data.dropna(subset=[target])
        input_schema = validation.schema
        X = coerce_features(data, input_schema)
        y = data[target] if task == "classification" else data[target].astype(float)
        progress(25, "splitting holdout")
        X_train, X_test, y_train, y_test = train_test_split(
            X,
            y,
            test_size=self.settings.test_size,
            stratify=y if task == "classification" else None,
            random_state=self.settings.random_state,
        )
        pipeline = (
            Pipeline([("preprocess", self.processor.preprocess(
                          input_schema, scale=model_type not in TREE_MODELS)),
                      ("model", estimator)])
            if own else estimator
        )  # fmt: skip
        progress(35, f"fitting {model_type}")
        _fit(pipeline, X_train, y_train, own)
        progress(80, "evaluating")
        metrics: EvaluationReport | RegressionReport = (
            self.evaluator.evaluate(pipeline, X_test, y_test)
            if task == "classification"
            else evaluate_regression(pipeline, X_test, y_test)
        )
        progress(90, "profiling reference data")
        profile = build_reference_profile(
            X_train,
            input_schema,
            pipeline.predict(X_test),
            bins=self.settings.profile_bins,
            sample_size=self.settings.profile_sample_size,
            random_state=self.settings.random_state,
            task=task,
        )
        log.info("trained model_type=%s task=%s rows=%d %s", model_type, task,
                 len(X_train), metrics)  # fmt: skip
        progress(100, "trained")
        return ModelResult(
            pipeline=pipeline,
            model_type=model_type,
            params=params,
            target=target,
            feature_names=[spec.name for spec in input_schema],
            classes=[to_plain(c) for c in getattr(pipeline, "classes_", [])],
            input_schema=input_schema,
            reference_profile=profile,
            metrics=metrics,
            training_data_size=len(X_train),
            holdout_size=len(X_test),
            data_fingerprint=fingerprint_data(data),
            dataset=dataset,
            holdout_X=X_test,
            holdout_y=y_test,
            task=task,
            source={"dataset": dataset} if dataset else None,
        )


def _fit(pipeline: Any, X: pd.DataFrame, y: pd.Series, own: bool) -> None:
    """Fit, turning a failure into the error a person can act on."""
    try:
        pipeline.fit(X, y)
    except InvalidParameterError as exc:
        raise InvalidInputError(f"invalid parameters: {exc}", field="params") from exc
    except Exception as exc:
        if own:
            raise
        # A user's pipeline may fail on anything the new data holds: say so, and
        # the champion keeps serving.
        raise UnprocessableDataError(
            f"the champion's pipeline cannot be refitted on this data: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
