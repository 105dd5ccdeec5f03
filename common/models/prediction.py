"""Turning a fitted pipeline's probabilities into answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from common.models.evaluation import to_plain


@dataclass(frozen=True)
class Prediction:
    """One answered row."""

    prediction: Any
    confidence: float
    probabilities: dict[str, float]


def predict_rows(pipeline: Any, frame: pd.DataFrame) -> list[Prediction]:
    """Predict every row of `frame`: the most probable class and all probabilities."""
    probabilities = pipeline.predict_proba(frame)
    classes = [to_plain(c) for c in pipeline.classes_]
    names = [str(c) for c in classes]
    best = np.argmax(probabilities, axis=1)
    return [
        Prediction(
            prediction=classes[index],
            confidence=float(row[index]),
            probabilities=dict(zip(names, map(float, row), strict=True)),
        )
        for row, index in zip(probabilities, best, strict=True)
    ]
