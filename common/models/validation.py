"""Validation of prediction inputs against a model's input schema.

Every problem is listed at once, each with the field it is about. Values the model
can still answer (an unseen category, a number outside the training range, an
explicit null) are not errors: they come back as data-quality flags.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.models.schemas import FeatureSpec

PLAUSIBLE_FACTOR = 1e12  # times the largest magnitude seen in training


@dataclass(frozen=True)
class FieldProblem:
    """One reason an input was refused."""

    field: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass
class ValidatedInstances:
    """Rows (values in schema order) ready for `to_frame`, or what stops them."""

    rows: list[list[Any]] = field(default_factory=list)
    problems: list[FieldProblem] = field(default_factory=list)
    quality: list[list[str]] = field(default_factory=list)


def validate_instances(
    schema: list[FeatureSpec], instances: list[Any], paths: list[str]
) -> ValidatedInstances:
    """Check each instance (a JSON object) against `schema`.

    `paths` names each instance in messages ("features" or "instances[3]").
    """
    problems: list[FieldProblem] = []
    quality: list[list[str]] = []
    rows: list[list[Any]] = []
    known = {spec.name for spec in schema}
    for instance, path in zip(instances, paths, strict=True):
        if not isinstance(instance, dict):
            problems.append(
                FieldProblem(
                    path, "not_an_object", "expected an object of feature values"
                )
            )
            continue
        flags: list[str] = []
        row: list[Any] = []
        for name in sorted(set(instance) - known):
            problems.append(
                FieldProblem(
                    f"{path}.{name}", "unknown_feature", f"unknown feature {name!r}"
                )
            )
        for spec in schema:
            where = f"{path}.{spec.name}"
            if spec.name not in instance:
                problems.append(
                    FieldProblem(
                        where, "missing_feature", f"feature {spec.name!r} is required"
                    )
                )
                continue
            value, problem, flag = _check_value(spec, instance[spec.name], where)
            if problem:
                problems.append(problem)
            if flag:
                flags.append(flag)
            row.append(value)
        rows.append(row)
        quality.append(flags)
    if problems:
        return ValidatedInstances([], problems, quality)
    return ValidatedInstances(rows, [], quality)


# Unseen categories are answered (and flagged); a value this long is no category,
# and would be stored in every prediction log row.
MAX_CATEGORY_LENGTH = 200
NO_NUL = "^[^\u0000]*$"  # JSON Schema pattern: text PostgreSQL can store


def _check_value(
    spec: FeatureSpec, value: Any, where: str
) -> tuple[Any, FieldProblem | None, str | None]:
    """Return (model value, problem, data-quality flag) for one feature value."""
    if value is None:
        return None, None, f"missing:{spec.name}"
    if spec.type == "category":
        if not isinstance(value, str):
            message = f"expected a string category, got {_kind(value)}"
            return None, FieldProblem(where, "wrong_type", message), None
        if len(value) > MAX_CATEGORY_LENGTH:
            message = (
                f"a category is at most {MAX_CATEGORY_LENGTH} characters, "
                f"got {len(value)}"
            )
            return None, FieldProblem(where, "too_long", message), None
        if "\x00" in value:  # PostgreSQL keeps no NUL in text or JSON: the log would
            message = "a category cannot contain a NUL character"  # refuse the row
            return None, FieldProblem(where, "invalid_character", message), None
        known = value in (spec.categories or [])
        return value, None, None if known else f"unseen_category:{spec.name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        message = f"expected a number, got {_kind(value)}"
        return None, FieldProblem(where, "wrong_type", message), None
    try:
        number = float(value)
    except OverflowError:  # an integer literal too large for a float
        number = math.inf
    if not math.isfinite(number):
        message = "expected a finite number, got NaN or Infinity"
        return None, FieldProblem(where, "not_finite", message), None
    limit = largest_plausible(spec)
    if abs(number) > limit:
        message = (
            f"{number:g} is beyond what the model can compute with (|x| <= {limit:g})"
        )
        return None, FieldProblem(where, "too_large", message), None
    low = -math.inf if spec.min is None else spec.min
    high = math.inf if spec.max is None else spec.max
    return number, None, None if low <= number <= high else f"out_of_range:{spec.name}"


def largest_plausible(spec: FeatureSpec) -> float:
    """Magnitudes past this overflow inside scaling and linear models."""
    seen = max(abs(spec.min or 0.0), abs(spec.max or 0.0), 1.0)
    return PLAUSIBLE_FACTOR * seen


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def to_frame(schema: list[FeatureSpec], rows: list[list[Any]]) -> pd.DataFrame:
    """Build the pipeline's input: float64 numbers, object strings, NaN for nulls."""
    names = _column_index(tuple(spec.name for spec in schema))
    if all(spec.type == "number" for spec in schema):  # fast path: one float block
        block = np.array(
            [[np.nan if v is None else v for v in row] for row in rows], dtype="float64"
        )
        return pd.DataFrame(block, columns=names)
    data: dict[str, Any] = {}
    for index, spec in enumerate(schema):
        values = [np.nan if row[index] is None else row[index] for row in rows]
        data[spec.name] = (
            np.array(values, dtype="float64")
            if spec.type == "number"
            else pd.Series(values, dtype=object)
        )
    return pd.DataFrame(data, columns=names)


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """Column labels as a plain object index, built once per schema (pandas would
    otherwise build an Arrow string index for every request)."""
    return pd.Index(names, dtype=object)
