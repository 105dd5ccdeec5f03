"""What scores a version's rows: its scikit-learn pipeline, or its ONNX model in ONNX
Runtime. Both give the same `Scores`, so /predict, micro-batches, batch scoring and
shadow scoring do not care which one serves.

`MODELOPS_INFERENCE_RUNTIME` chooses: `auto` serves ONNX where the version's
conversion matched scikit-learn, `sklearn` always serves scikit-learn, `onnx` refuses a
version whose conversion did not match.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import pandas as pd

from common.errors import ArtifactError
from common.models.compilation import MATRIX_INPUT, MISSING_CATEGORY, is_missing
from common.models.prediction import Scores, gives_probabilities, score_frame
from common.models.schemas import FeatureSpec
from common.models.validation import to_frame


class Scorer(Protocol):
    """Scores rows of one version."""

    runtime: str
    reason: str | None  # why scikit-learn serves, where it does
    gives_probabilities: bool

    def score_rows(self, schema: list[FeatureSpec], rows: list[list[Any]]) -> Scores:
        """Rows as validated (schema order, None for missing)."""
        ...

    def score_frame(self, frame: pd.DataFrame) -> Scores:
        """A frame in the schema's columns (float numbers, object categories)."""
        ...


class SklearnScorer:
    """The fitted pipeline itself."""

    runtime = "sklearn"

    def __init__(self, pipeline: Any, reason: str | None = None) -> None:
        self.pipeline = pipeline
        self.reason = reason
        self.gives_probabilities = gives_probabilities(pipeline)

    def score_rows(self, schema: list[FeatureSpec], rows: list[list[Any]]) -> Scores:
        return score_frame(self.pipeline, to_frame(schema, rows))

    def score_frame(self, frame: pd.DataFrame) -> Scores:
        return score_frame(self.pipeline, frame)


class OnnxScorer:
    """A compiled version in an ONNX Runtime session: rows go in as arrays, no frame
    is built."""

    runtime = "onnx"
    reason: str | None = None

    def __init__(
        self,
        onnx: bytes,
        schema: list[FeatureSpec],
        *,
        task: str,
        classes: list[Any] | None,
        threads: int = 1,
        missing_numbers: str = "onnx",
        fallback: Any = None,
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread per session: each API process already has a core (the server
        # workers = cores), so more threads would only oversubscribe them. Batch
        # scoring asks for more.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            onnx, options, providers=["CPUExecutionProvider"]
        )
        inputs = [i.name for i in self.session.get_inputs()]
        self.matrix = inputs == [MATRIX_INPUT]
        self.schema = schema
        # What the check found for rows with a missing number (compilation's
        # `_missing_numbers_mode`): answered here, refused as scikit-learn refuses
        # them, or scored by the scikit-learn pipeline (`fallback`).
        self.missing_numbers = missing_numbers
        self.fallback = SklearnScorer(fallback) if fallback is not None else None
        if missing_numbers == "sklearn" and self.fallback is None:
            raise ValueError("rows with a missing number need the pipeline")
        self.classes = list(classes or []) if task == "classification" else None
        self._class_array = np.asarray(self.classes or [], dtype=object)
        outputs = [o.name for o in self.session.get_outputs()]
        self.gives_probabilities = "probabilities" in outputs
        self._outputs = outputs

    def score_rows(self, schema: list[FeatureSpec], rows: list[list[Any]]) -> Scores:
        if self.missing_numbers != "onnx":
            gaps = [any(v is None for v, spec in zip(row, schema, strict=True)
                        if spec.type == "number") for row in rows]  # fmt: skip
            if any(gaps):
                return self._with_gaps(to_frame(schema, rows), np.asarray(gaps))
        if self.matrix:
            block = np.array([[math.nan if v is None else v for v in row]
                              for row in rows], dtype=np.float32)  # fmt: skip
            return self._run({MATRIX_INPUT: block}, len(rows))
        feed = {}
        for index, spec in enumerate(schema):
            column = [row[index] for row in rows]
            feed[spec.name] = _column(spec, column)
        return self._run(feed, len(rows))

    def score_frame(self, frame: pd.DataFrame) -> Scores:
        if self.missing_numbers != "onnx":
            numbers = [s.name for s in self.schema if s.type == "number"]
            gaps = frame[numbers].isna().any(axis=1).to_numpy()
            if gaps.any():
                return self._with_gaps(frame, gaps)
        return self._score_complete(frame)

    def _score_complete(self, frame: pd.DataFrame) -> Scores:
        if self.matrix:
            block = frame[[s.name for s in self.schema]].to_numpy(dtype=np.float32)
            return self._run({MATRIX_INPUT: block}, len(frame))
        feed = {spec.name: _frame_column(spec, frame[spec.name])
                for spec in self.schema}  # fmt: skip
        return self._run(feed, len(frame))

    def _with_gaps(self, frame: pd.DataFrame, gaps: np.ndarray) -> Scores:
        """Rows with a missing number refused, or scored by scikit-learn beside
        the compiled model's answers for the rest."""
        if self.fallback is None:
            raise ValueError("Input contains NaN: this model needs every number")
        if gaps.all():
            return self.fallback.score_frame(frame)
        theirs = self.fallback.score_frame(frame[gaps])
        mine = self._score_complete(frame[~gaps])
        predictions = np.empty(len(frame), dtype=mine.predictions.dtype)
        predictions[~gaps], predictions[gaps] = mine.predictions, theirs.predictions
        probabilities, indices = None, None
        if mine.probabilities is not None and theirs.probabilities is not None:
            probabilities = np.empty((len(frame), mine.probabilities.shape[1]))
            probabilities[~gaps] = mine.probabilities
            probabilities[gaps] = theirs.probabilities
        if mine.indices is not None and theirs.indices is not None:
            indices = np.empty(len(frame), dtype=mine.indices.dtype)
            indices[~gaps], indices[gaps] = mine.indices, theirs.indices
        return Scores(predictions, probabilities, mine.classes, indices)

    def _run(self, feed: dict[str, np.ndarray], count: int) -> Scores:
        results = dict(zip(self._outputs, self.session.run(None, feed), strict=True))
        if self.classes is None:
            values = np.asarray(results[self._outputs[0]], dtype=float).reshape(count)
            return Scores(values, None, None)
        if not self.gives_probabilities:
            labels = np.asarray(results["label"]).reshape(count)
            return Scores(_as_classes(labels, self._class_array), None, self.classes)
        probabilities = np.asarray(results["probabilities"], dtype=float)
        best = np.argmax(probabilities, axis=1)
        return Scores(self._class_array[best], probabilities, self.classes, best)


def _column(spec: FeatureSpec, values: list[Any]) -> np.ndarray:
    if spec.type == "number":
        return np.array([math.nan if v is None else v for v in values],
                        dtype=np.float32).reshape(-1, 1)  # fmt: skip
    return np.array([MISSING_CATEGORY if is_missing(v) else str(v) for v in values],
                    dtype=object).reshape(-1, 1)  # fmt: skip


def _frame_column(spec: FeatureSpec, values: pd.Series) -> np.ndarray:
    """A frame's column as `_column` makes a row list's, without a Python step per
    cell (a batch job feeds a hundred thousand rows a call)."""
    if spec.type == "number":
        return values.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
    cells = values.to_numpy(dtype=object)
    text = cells.astype(str).astype(object)
    text[pd.isna(cells)] = MISSING_CATEGORY
    return text.reshape(-1, 1)


def _as_classes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """ONNX labels as the version's own class values (ints stay ints, etc.)."""
    by_text = {str(c): c for c in classes}
    return np.asarray([by_text.get(str(label), label) for label in labels],
                      dtype=object)  # fmt: skip


def serving_runtime(setting: str, version_runtime: str | None, reason: str | None,
                    version: int) -> tuple[str, str | None]:  # fmt: skip
    """The runtime a version serves with under `setting`, and why scikit-learn
    serves where it does (None where ONNX serves).

    Raises
    ------
    ArtifactError
        `setting` is `onnx` and the version has no matching compiled model.
    """
    if setting == "sklearn":
        return "sklearn", "MODELOPS_INFERENCE_RUNTIME=sklearn"
    if version_runtime == "onnx":
        return "onnx", None
    if setting == "onnx":
        raise ArtifactError(
            f"version {version} has no compiled model that matches scikit-learn "
            f"({reason or 'not compiled yet'}), and MODELOPS_INFERENCE_RUNTIME=onnx "
            "refuses to serve it with scikit-learn",
            version=version,
        )
    return "sklearn", reason or "not compiled"
