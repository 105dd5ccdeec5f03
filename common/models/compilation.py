"""Compiling a fitted pipeline to ONNX, and proving the result answers the same.

skl2onnx converts what it knows (imputers, scalers, one-hot encoding, column
transformers, linear models, trees, forests, gradient boosting, ...). A conversion is
kept only when ONNX Runtime, on a sample of real rows and of random valid ones
(missing values and unseen categories included), gives the same class on every row
and probabilities within `PROBABILITY_TOLERANCE` (a regressor: values within
`REGRESSION_TOLERANCE` of the predictions' scale). Otherwise scikit-learn serves the
version and `reason` says why.

One adaptation makes ModelOps' own pipelines convertible: a categorical imputer that
looks for NaN (skl2onnx only imputes strings by a string marker) is converted as one
looking for `MISSING_CATEGORY`, which the runtime feeds in place of a missing
category. The scikit-learn pipeline itself is never changed.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.models.schemas import FeatureSpec

log = logging.getLogger(__name__)

MISSING_CATEGORY = "\x00modelops:missing"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBABILITY_TOLERANCE = 1e-5
REGRESSION_TOLERANCE = 1e-4  # relative to the predictions' spread (float32 inside)
SAMPLE_ROWS = 2000  # of the reference
RANDOM_ROWS = 1000  # random valid rows on top: missing values, unseen categories
MISSING_SHARE = 0.1


@dataclass(frozen=True)
class Compilation:
    """What the compiler made of one version: the ONNX bytes when they matched."""

    onnx: bytes | None
    reason: str | None  # why scikit-learn serves, when it does
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        return "onnx" if self.onnx is not None else "sklearn"


def compile_pipeline(
    pipeline: Any,
    schema: list[FeatureSpec],
    reference: pd.DataFrame,
    *,
    task: str,
    classes: list[Any] | None,
    random_state: int = 0,
) -> Compilation:
    """Convert `pipeline` and check it on rows of `reference` (the features, in
    `schema`'s columns) and random valid rows; never raises for a model that does
    not convert or does not match."""
    try:
        onnx_bytes = convert(pipeline, schema, task=task)
    except Exception as exc:  # skl2onnx raises anything for what it does not know
        reason = f"skl2onnx cannot convert it: {_first_line(exc)}"
        log.info("not compiled: %s", reason)
        return Compilation(None, reason)
    from common.models.runtime import OnnxScorer, SklearnScorer

    sample = check_rows(schema, reference, random_state=random_state)
    gaps = _missing_numbers(sample, schema)
    complete, gapped = sample[~gaps], sample[gaps]
    sklearn_scorer = SklearnScorer(pipeline)
    try:
        expected = sklearn_scorer.score_frame(complete)
    except Exception as exc:
        reason = f"scikit-learn fails on the check's rows: {_first_line(exc)}"
        return Compilation(None, reason)
    try:
        compiled = OnnxScorer(onnx_bytes, schema, task=task, classes=classes)
        actual = compiled.score_frame(complete)
    except Exception as exc:  # a graph ONNX Runtime refuses, or rows it fails on
        reason = f"ONNX Runtime cannot run the conversion: {_first_line(exc)}"
        log.info("not compiled: %s", reason)
        return Compilation(None, reason)
    mismatch, check = compare(expected, actual, task=task)
    check["rows"] = len(sample)
    if mismatch is not None:
        log.info("not compiled: %s", mismatch)
        return Compilation(None, mismatch, check)
    check["missing_numbers"] = _missing_numbers_mode(
        sklearn_scorer, compiled, gapped, task
    )
    return Compilation(onnx_bytes, None, check)


def convert(pipeline: Any, schema: list[FeatureSpec], *, task: str) -> bytes:
    """The ONNX model of `pipeline`: one input per column of `schema` (a pipeline
    fed a frame sees columns), or one matrix for a plain estimator on numbers."""
    from skl2onnx import to_onnx

    convertible = _with_marked_missing_categories(pipeline)
    options = None
    if task == "classification":  # probabilities as a tensor, not a list of maps
        options = _FinalEstimatorOptions({id(_final_estimator(convertible)):
                                          {"zipmap": False}})  # fmt: skip
    _skip_option_walk()
    attempts = [_column_inputs(schema)]
    if all(spec.type == "number" for spec in schema):
        attempts.append(_matrix_input(schema))
    error: Exception | None = None
    for inputs in attempts:
        try:
            model = to_onnx(convertible, initial_types=inputs, options=options,
                            target_opset=TARGET_OPSET)  # fmt: skip
        except Exception as exc:  # try the next input layout
            error = exc
            continue
        if len(inputs) > 1 and all(spec.type == "number" for spec in schema):
            model = _fed_as_one_matrix(model, [spec.name for spec in schema])
        return bytes(model.SerializeToString())
    assert error is not None
    raise error


def compare(
    expected: Any, actual: Any, *, task: str
) -> tuple[str | None, dict[str, Any]]:
    """Why `actual` (ONNX Runtime's scores) is not the same as `expected`
    (scikit-learn's), or None; with the figures of the comparison."""
    if task == "regression":
        want = np.asarray(expected.predictions, dtype=float)
        got = np.asarray(actual.predictions, dtype=float)
        scale = max(
            float(np.std(want)), float(np.max(np.abs(want), initial=0.0)), 1e-12
        )
        worst = float(np.max(np.abs(want - got) / scale, initial=0.0))
        check = {"max_relative_difference": worst, "tolerance": REGRESSION_TOLERANCE}
        if not math.isfinite(worst) or worst > REGRESSION_TOLERANCE:
            reason = (f"the compiled model's values differ by up to {worst:.2e} of "
                      f"their scale (tolerance {REGRESSION_TOLERANCE:g})")  # fmt: skip
            return reason, check
        return None, check
    want_classes = np.asarray(expected.predictions, dtype=object)
    mismatched = int(
        np.sum(want_classes != np.asarray(actual.predictions, dtype=object))
    )
    check = {"mismatched_classes": mismatched}
    if expected.probabilities is not None:
        if actual.probabilities is None:
            return "the compiled model gives no probabilities", check
        worst = float(np.max(np.abs(expected.probabilities - actual.probabilities),
                             initial=0.0))  # fmt: skip
        check.update(max_probability_difference=worst,
                     tolerance=PROBABILITY_TOLERANCE)  # fmt: skip
        if not math.isfinite(worst) or worst > PROBABILITY_TOLERANCE:
            return (f"the compiled model's probabilities differ by up to {worst:.2e} "
                    f"(tolerance {PROBABILITY_TOLERANCE:g})"), check  # fmt: skip
    if mismatched:
        return (f"the compiled model predicts another class on {mismatched} of "
                f"{len(expected.predictions)} checked rows"), check  # fmt: skip
    return None, check


def check_rows(
    schema: list[FeatureSpec], reference: pd.DataFrame, *, random_state: int = 0
) -> pd.DataFrame:
    """Up to `SAMPLE_ROWS` rows of the reference and `RANDOM_ROWS` random valid ones,
    as the serving path builds them (float numbers, object categories, NaN)."""
    from common.models.validation import to_frame

    rng = np.random.default_rng(random_state)
    names = [spec.name for spec in schema]
    picked = reference[names]
    if len(picked) > SAMPLE_ROWS:
        picked = picked.sample(SAMPLE_ROWS, random_state=random_state)
    rows = [
        [None if is_missing(v) else v for v in row]
        for row in picked.itertuples(index=False, name=None)
    ]
    rows += random_rows(schema, RANDOM_ROWS, rng, reference=picked)
    return to_frame(schema, rows)


def _missing_numbers(frame: pd.DataFrame, schema: list[FeatureSpec]) -> pd.Series:
    """Rows with a missing number: pipelines differ most in what they do there."""
    numbers = [spec.name for spec in schema if spec.type == "number"]
    if not numbers:
        return pd.Series(False, index=frame.index)
    return frame[numbers].isna().any(axis=1)


def _missing_numbers_mode(sklearn: Any, compiled: Any, gapped: pd.DataFrame,
                          task: str) -> str:  # fmt: skip
    """How rows with a missing number are served: `onnx` (the compiled model
    answers them as scikit-learn does), `refuse` (scikit-learn fails on them, e.g. a
    scaler straight into a linear model: the compiled model must not answer them
    either) or `sklearn` (a tree that sends NaN down its own branch, which ONNX
    does not: scikit-learn scores those rows)."""
    if gapped.empty:
        return "onnx"
    try:
        expected = sklearn.score_frame(gapped)
    except Exception:
        return "refuse"
    try:
        actual = compiled.score_frame(gapped)
    except Exception:
        return "sklearn"
    mismatch, _ = compare(expected, actual, task=task)
    return "onnx" if mismatch is None else "sklearn"


def random_rows(
    schema: list[FeatureSpec],
    count: int,
    rng: np.random.Generator,
    *,
    reference: pd.DataFrame | None = None,
) -> list[list[Any]]:
    """Random rows the validation accepts: numbers within each feature's range,
    known and unseen categories, and a share of missing values."""
    columns = []
    for spec in schema:
        if spec.type == "number":
            low, high = _range(spec, reference)
            values: list[Any] = list(rng.uniform(low, high, count))
        else:
            known = list(spec.categories or []) or ["a"]
            choices = [*known, "never-seen-category"]
            values = [choices[i] for i in rng.integers(0, len(choices), count)]
        missing = rng.random(count) < MISSING_SHARE
        columns.append([None if m else v for v, m in zip(values, missing, strict=True)])
    return [list(row) for row in zip(*columns, strict=True)]


def _range(spec: FeatureSpec, reference: pd.DataFrame | None) -> tuple[float, float]:
    low, high = spec.min, spec.max
    if (
        reference is not None
        and spec.name in reference
        and (low is None or high is None)
    ):
        column = pd.to_numeric(reference[spec.name], errors="coerce").dropna()
        if len(column):
            low = float(column.min()) if low is None else low
            high = float(column.max()) if high is None else high
    low = -1.0 if low is None else float(low)
    high = low + 2.0 if high is None else float(high)
    return low, max(high, low)


def _with_marked_missing_categories(pipeline: Any) -> Any:
    """A copy whose categorical imputers look for `MISSING_CATEGORY` instead of NaN
    (skl2onnx imputes strings only by a string marker); the original is untouched."""
    from sklearn.impute import SimpleImputer

    marked = copy.deepcopy(pipeline)
    for part in parts(marked):
        if (
            isinstance(part, SimpleImputer)
            and is_missing(part.missing_values)
            and getattr(part, "statistics_", np.array([])).dtype == object
        ):
            part.missing_values = MISSING_CATEGORY
    return marked


class _FinalEstimatorOptions(dict[int, dict[str, Any]]):
    """Converter options keyed by the id of the estimator they are for."""


def _final_estimator(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[-1][1]
    return model


_option_walk_skipped = False


def _skip_option_walk() -> None:
    """Hand `_FinalEstimatorOptions` to the converters as they are.

    skl2onnx maps options to estimators by walking every fitted attribute of every
    estimator, three times a conversion: for a 100-tree forest that is `dir()` and
    `feature_importances_` of each tree, about 3 of its 4 seconds (profiled here).
    Options already keyed by the id of a final estimator come out of that walk
    unchanged (it only rewrites names, and a pipeline's options onto its last
    step), so for them the walk is skipped; any other options take skl2onnx's own
    path.
    """
    global _option_walk_skipped
    if _option_walk_skipped:
        return
    from skl2onnx import _parse
    from skl2onnx import convert as skl2onnx_convert

    _option_walk_skipped = True
    original = getattr(skl2onnx_convert, "_process_options", None)
    if original is None or getattr(_parse, "_process_options", None) is not original:
        log.info("skl2onnx changed: its option walk is kept (slower, same result)")
        return

    walk: Any = original

    def process_options(model: Any, options: Any) -> Any:
        if isinstance(options, _FinalEstimatorOptions):
            return options
        return walk(model, options)

    _parse._process_options = process_options
    skl2onnx_convert._process_options = process_options


def parts(estimator: Any) -> list[Any]:
    """`estimator` and every fitted estimator inside it (pipelines, column
    transformers, feature unions)."""
    found = [estimator]
    inner: list[Any] = []
    if hasattr(estimator, "steps"):
        inner = [step for _, step in estimator.steps]
    elif hasattr(estimator, "transformers_"):
        inner = [t for _, t, _ in estimator.transformers_]
    elif hasattr(estimator, "transformer_list"):
        inner = [t for _, t in estimator.transformer_list]
    for part in inner:
        if not isinstance(part, str):  # "drop", "passthrough"
            found += parts(part)
    return found


def _fed_as_one_matrix(model: Any, names: list[str]) -> Any:
    """`model`'s one-column number inputs replaced by one float matrix (the columns
    in `names`' order), split into the same names inside the graph. ONNX Runtime
    pays per input on every call: one row through a 20-feature logistic regression
    took about 22 us fed one matrix against 34 to 50 us fed 20 columns. The check
    that follows runs this graph. Unchanged where the matrix's name is taken."""
    from onnx import TensorProto, helper

    graph = model.graph
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {tensor.name for tensor in graph.initializer}
    sizes = f"{MATRIX_INPUT}_column_sizes"
    if {MATRIX_INPUT, sizes} & (taken | set(names)):
        return model
    graph.initializer.append(
        helper.make_tensor(sizes, TensorProto.INT64, [len(names)], [1] * len(names))
    )
    split = helper.make_node("Split", [MATRIX_INPUT, sizes], names, axis=1,
                             name="modelops_matrix_to_columns")  # fmt: skip
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(
        MATRIX_INPUT, TensorProto.FLOAT, [None, len(names)]))  # fmt: skip
    graph.node.insert(0, split)
    return model


def _column_inputs(schema: list[FeatureSpec]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (spec.name, FloatTensorType([None, 1]) if spec.type == "number"
         else StringTensorType([None, 1]))
        for spec in schema
    ]  # fmt: skip


def _matrix_input(schema: list[FeatureSpec]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType

    return [(MATRIX_INPUT, FloatTensorType([None, len(schema)]))]


MATRIX_INPUT = "input"


def is_missing(value: Any) -> bool:
    """None or NaN: what a served row and an imputer both call missing."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
