"""Turning a fitted pipeline's output into answers: a classifier's class with its
probabilities (where it has `predict_proba`), or a regressor's value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def to_plain(value: Any) -> Any:
    """Return a JSON-friendly Python scalar for a numpy scalar."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Prediction:
    """One answered row; confidence and probabilities only where the model gives
    probabilities."""

    prediction: Any
    confidence: float | None
    probabilities: dict[str, float] | None


def model_classes(pipeline: Any) -> list[Any] | None:
    """A classifier's classes, or None for a regressor."""
    try:
        classes = pipeline.classes_
    except AttributeError:
        return None
    return [to_plain(c) for c in classes]


def gives_probabilities(pipeline: Any) -> bool:
    return model_classes(pipeline) is not None and hasattr(pipeline, "predict_proba")


@dataclass(frozen=True)
class Scores:
    """A frame's answers as arrays: what batch scoring writes and rows are made of."""

    predictions: np.ndarray
    probabilities: np.ndarray | None  # rows x classes
    classes: list[Any] | None
    # each prediction's position in `classes`, where the answer came from the
    # probabilities: batch scoring writes a class's text per row without a
    # Python str() per row
    indices: np.ndarray | None = None


def score_frame(pipeline: Any, frame: pd.DataFrame) -> Scores:
    """Predict every row of `frame` in one call."""
    classes = model_classes(pipeline)
    if classes is None:
        values = np.asarray(pipeline.predict(frame), dtype=float).reshape(len(frame))
        return Scores(values, None, None)
    if not hasattr(pipeline, "predict_proba"):
        return Scores(np.asarray(pipeline.predict(frame), dtype=object), None, classes)
    probabilities = np.asarray(pipeline.predict_proba(frame), dtype=float)
    best = np.argmax(probabilities, axis=1)
    return Scores(np.asarray(classes, dtype=object)[best], probabilities, classes, best)


def predict_rows(pipeline: Any, frame: pd.DataFrame) -> list[Prediction]:
    """Predict every row of `frame`."""
    return predictions_from(score_frame(pipeline, frame))


def predictions_from(scores: Scores) -> list[Prediction]:
    """One answer per scored row. The arrays become Python numbers in one call each
    (a micro-batch or a shadow's gathering is hundreds of rows, answered per row)."""
    if scores.probabilities is None:
        return [Prediction(to_plain(p), None, None) for p in scores.predictions]
    names = [str(c) for c in scores.classes or []]
    confidences = scores.probabilities.max(axis=1).tolist()
    return [
        Prediction(to_plain(prediction), confidence, dict(zip(names, row, strict=True)))
        for prediction, confidence, row in zip(
            scores.predictions, confidences, scores.probabilities.tolist(), strict=True
        )
    ]
