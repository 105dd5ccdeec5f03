"""Metrics of a fitted model on a holdout: classification or regression."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)

from common.models.prediction import to_plain


@dataclass(frozen=True)
class EvaluationReport:
    """Macro-averaged metrics, a per-class report and the confusion matrix."""

    accuracy: float
    precision: float
    recall: float
    f1_score: float
    labels: list[Any]
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    support: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegressionReport:
    """Errors of a regressor: the gate compares MAE, lower is better."""

    mae: float
    rmse: float
    r2: float | None
    support: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_regression(model: Any, X: pd.DataFrame, y: pd.Series) -> RegressionReport:
    """Predict `X` with a regressor and compare with `y`."""
    predicted = np.asarray(model.predict(X), dtype=float)
    truth = np.asarray(y, dtype=float)
    return RegressionReport(
        mae=float(mean_absolute_error(truth, predicted)),
        rmse=float(np.sqrt(mean_squared_error(truth, predicted))),
        r2=float(r2_score(truth, predicted)) if len(truth) > 1 else None,
        support=len(truth),
    )


class ModelEvaluator:
    """Scores predictions against true labels; labels ordered as the model's classes."""

    def evaluate(self, model: Any, X: pd.DataFrame, y: pd.Series) -> EvaluationReport:
        """Predict `X` with `model` and compare with `y`."""
        return self.evaluate_predictions(
            y, model.predict(X), labels=list(model.classes_)
        )

    def evaluate_predictions(
        self, y_true: Any, y_pred: Any, labels: list[Any]
    ) -> EvaluationReport:
        """Compare predictions with true labels."""
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average="macro", zero_division=0
        )
        report = classification_report(
            y_true,
            y_pred,
            labels=labels,
            target_names=[str(label) for label in labels],
            output_dict=True,
            zero_division=0,
        )
        per_class = {
            str(label): {k: float(v) for k, v in report[str(label)].items()}
            for label in labels
        }
        matrix = confusion_matrix(y_true, y_pred, labels=labels)
        return EvaluationReport(
            accuracy=float(accuracy_score(y_true, y_pred)),
            precision=float(precision),
            recall=float(recall),
            f1_score=float(f1),
            labels=[to_plain(label) for label in labels],
            per_class=per_class,
            confusion_matrix=matrix.astype(int).tolist(),
            support=len(y_true),
        )
