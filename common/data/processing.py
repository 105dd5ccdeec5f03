"""Loading, validating and preprocessing tabular training data."""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from common.config import Settings
from common.errors import (
    DatasetNotFoundError,
    InvalidInputError,
    UnprocessableDataError,
)
from common.models.schemas import FeatureSpec

log = logging.getLogger(__name__)

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
NUMERIC_SHARE = 0.9  # an object column this numeric is a numeric column with bad cells
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class DataProblem:
    """One thing wrong with a dataset, with where it is."""

    code: str
    message: str
    column: str | None = None
    rows: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ValidationResult:
    """Every problem found at once; `ok` when there are none."""

    problems: list[DataProblem] = field(default_factory=list)
    warnings: list[DataProblem] = field(default_factory=list)
    schema: list[FeatureSpec] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self, source: str = "dataset") -> None:
        """Raise `UnprocessableDataError` listing every problem, if any."""
        if self.problems:
            summary = "; ".join(p.message for p in self.problems)
            raise UnprocessableDataError(
                f"{source} is not usable: {summary}",
                problems=[p.to_dict() for p in self.problems],
            )


class DataProcessor:
    """Reads datasets, checks them for training, and builds the preprocessing step."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load_data(self, path: str | Path) -> pd.DataFrame:
        """Read a CSV or Parquet file.

        Raises
        ------
        DatasetNotFoundError
            When the file does not exist.
        InvalidInputError
            When the format is unknown or the file cannot be parsed.
        """
        path = Path(path)
        kind = READERS.get(path.suffix.lower())
        if kind is None:
            raise InvalidInputError(
                f"{path.name}: unsupported format {path.suffix!r}; "
                "use .csv or .parquet",
                path=str(path),
            )
        if not path.is_file():
            raise DatasetNotFoundError(f"no such dataset file: {path}", path=str(path))
        try:
            if kind == "csv":
                return _read_csv(path)
            return pd.read_parquet(path)
        except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"{path.name} cannot be read as {kind}: {exc}", path=str(path)
            ) from exc

    def validate_data(
        self,
        df: pd.DataFrame,
        target: str,
        schema: list[FeatureSpec] | None = None,
        task: str = "classification",
    ) -> ValidationResult:
        """Check `df` for training a `task` model; list every problem, and infer the
        input schema.

        With `schema` (a champion's), feature types come from it instead of inference.
        """
        result = ValidationResult()
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        if duplicated:
            result.problems.append(
                DataProblem(
                    "duplicate_columns", f"duplicate column names: {duplicated}"
                )
            )
            df = df.loc[:, ~df.columns.duplicated()]
        _check_target(self.settings, df, target, result, task)
        features = [str(c) for c in df.columns if c != target]
        if not features:
            result.problems.append(DataProblem("no_features", "no feature columns"))
        expected = {spec.name: spec for spec in schema or []}
        for name in sorted(set(expected) - set(features)):
            result.problems.append(
                DataProblem(
                    "missing_feature", f"feature {name!r} is missing", column=name
                )
            )
        for name in features:
            spec = _check_feature(
                self.settings, df[name], name, expected.get(name), result
            )
            if spec is not None:
                result.schema.append(spec)
        return result

    def preprocess(
        self, schema: list[FeatureSpec], *, scale: bool = True
    ) -> ColumnTransformer:
        """Build the (unfitted) preprocessing step that goes inside the model pipeline.

        Numeric: median imputation, then scaling unless `scale` is off (trees split
        the same with or without it; without it, the compiled model reads the very
        float32 values scikit-learn's trees read, so it answers exactly the same).
        Categorical: most-frequent imputation then one-hot encoding that ignores
        categories unseen in training.
        """
        numeric = [s.name for s in schema if s.type == "number"]
        categorical = [s.name for s in schema if s.type == "category"]
        transformers: list[tuple[str, Any, list[str]]] = []
        if numeric:
            transformers.append(
                (
                    "number",
                    Pipeline(
                        [("impute", SimpleImputer(strategy="median"))]
                        + ([("scale", StandardScaler())] if scale else [])
                    ),
                    numeric,
                )
            )
        if categorical:
            transformers.append(
                (
                    "category",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="most_frequent")),
                            ("onehot", OneHotEncoder(handle_unknown="ignore")),
                        ]
                    ),
                    categorical,
                )
            )
        return ColumnTransformer(transformers, remainder="drop")


def _read_csv(path: Path) -> pd.DataFrame:
    # pandas renames duplicate headers to "a.1"; read the header ourselves to see them.
    with path.open(newline="", encoding="utf-8") as stream:
        header = next(csv.reader(stream), [])
    df = pd.read_csv(path, header=0)
    df.columns = pd.Index(header)
    return df


def _check_target(
    settings: Settings,
    df: pd.DataFrame,
    target: str,
    result: ValidationResult,
    task: str = "classification",
) -> None:
    if target not in df.columns:
        result.problems.append(
            DataProblem(
                "missing_target",
                f"target column {target!r} not found; "
                f"columns are {list(map(str, df.columns))}",
                column=target,
            )
        )
        if len(df) < settings.min_training_rows:
            result.problems.append(_too_few_rows(settings, len(df)))
        return
    labels = df[target]
    missing = int(labels.isna().sum())
    if missing:
        result.warnings.append(
            DataProblem(
                "missing_labels",
                f"{missing} rows without a target value are dropped",
                column=target,
                rows=_first_rows(labels.isna()),
            )
        )
    usable = len(df) - missing
    if usable < settings.min_training_rows:
        result.problems.append(_too_few_rows(settings, usable))
    if task == "regression":
        _check_numeric_target(labels.dropna(), target, result)
        return
    counts = labels.dropna().astype(str).value_counts()
    if len(counts) < 2:
        result.problems.append(
            DataProblem(
                "one_class",
                f"target {target!r} has {len(counts)} class(es); at least 2 are needed",
                column=target,
            )
        )
    small = {str(k): int(v) for k, v in counts.items() if v < settings.min_class_rows}
    if small and len(counts) >= 2:
        result.problems.append(
            DataProblem(
                "class_too_small",
                f"classes with fewer than {settings.min_class_rows} rows: {small}",
                column=target,
            )
        )


def _check_numeric_target(
    labels: pd.Series, target: str, result: ValidationResult
) -> None:
    """A regressor's target: finite numbers, not all the same."""
    numbers = pd.to_numeric(labels, errors="coerce")
    bad = numbers.isna() | np.isinf(numbers)
    if bad.any():
        rows = _first_rows(bad)
        result.problems.append(DataProblem(
            "non_numeric_target",
            f"target {target!r} of a regressor must be finite numbers; "
            f"{int(bad.sum())} values are not, e.g. "
            f"{[str(labels.iloc[i]) for i in rows]}",
            column=target, rows=rows,
        ))  # fmt: skip
    elif numbers.nunique() < 2:
        result.problems.append(DataProblem(
            "constant_target", f"target {target!r} has one value; a regressor needs "
            "at least 2", column=target,
        ))  # fmt: skip


def _too_few_rows(settings: Settings, rows: int) -> DataProblem:
    return DataProblem(
        "too_few_rows",
        f"{rows} usable rows; at least {settings.min_training_rows} are needed",
    )


def _check_feature(
    settings: Settings,
    column: pd.Series,
    name: str,
    expected: FeatureSpec | None,
    result: ValidationResult,
) -> FeatureSpec | None:
    if column.isna().all():
        result.problems.append(
            DataProblem("empty_column", f"column {name!r} has no values", column=name)
        )
        return None
    kind = expected.type if expected else _infer_type(column)
    if kind == "number":
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            rows = _first_rows(bad)
            examples = [str(column.iloc[i]) for i in rows]
            result.problems.append(
                DataProblem(
                    "non_numeric_values",
                    f"column {name!r} is numeric but has {int(bad.sum())} non-numeric "
                    f"values, e.g. {examples} at rows {rows}",
                    column=name,
                    rows=rows,
                )
            )
            return None
        infinite = np.isinf(numbers)
        if infinite.any():
            rows = _first_rows(infinite)
            result.problems.append(
                DataProblem(
                    "infinite_values",
                    f"column {name!r} has {int(infinite.sum())} infinite values "
                    "at rows "
                    f"{rows}",
                    column=name,
                    rows=rows,
                )
            )
            return None
        finite = numbers.dropna()
        return FeatureSpec(name, "number", float(finite.min()), float(finite.max()))
    categories = sorted(column.dropna().astype(str).unique().tolist())
    if len(categories) > settings.max_categories:
        result.problems.append(
            DataProblem(
                "too_many_categories",
                f"column {name!r} has {len(categories)} categories; at most "
                f"{settings.max_categories} are allowed",
                column=name,
            )
        )
        return None
    return FeatureSpec(name, "category", categories=categories)


def _infer_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "category"
    if pd.api.types.is_numeric_dtype(column):
        return "number"
    present = column.dropna()
    share = (
        pd.to_numeric(present, errors="coerce").notna().mean() if len(present) else 0
    )
    return "number" if share >= NUMERIC_SHARE else "category"


def _first_rows(mask: pd.Series) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask.to_numpy())[:EXAMPLE_ROWS]]


def coerce_features(df: pd.DataFrame, schema: list[FeatureSpec]) -> pd.DataFrame:
    """Return the schema's columns with model dtypes: float numbers, object strings.

    Training and prediction both pass through here, so the pipeline always sees the
    same dtypes whatever pandas inferred from a file or JSON.
    """
    out = {}
    for spec in schema:
        column = df[spec.name]
        if spec.type == "number":
            out[spec.name] = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            values = column.astype("object")
            out[spec.name] = (
                values.astype(str).astype("object").where(values.notna(), np.nan)
            )
    return pd.DataFrame(out, index=df.index)


def fingerprint_data(df: pd.DataFrame) -> str:
    """Return a sha256 of the content and column names (row order matters)."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, df.columns)).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def example_features(schema: list[FeatureSpec]) -> dict[str, Any]:
    """Return one plausible input: mid-range numbers, the first category."""
    example: dict[str, Any] = {}
    for spec in schema:
        if spec.type == "number":
            low, high = spec.min or 0.0, spec.max or 0.0
            example[spec.name] = round((low + high) / 2, 6)
        else:
            example[spec.name] = (spec.categories or [""])[0]
    return example
