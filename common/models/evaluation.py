"""Classification metrics of a fitted model on a holdout."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)


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


def to_plain(value: Any) -> Any:
    """Return a JSON-friendly Python scalar for a numpy scalar."""
    return value.item() if isinstance(value, np.generic) else value
