from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.data.processing import DataProcessor, coerce_features, example_features
from common.errors import (
    DatasetNotFoundError,
    InvalidInputError,
    UnprocessableDataError,
)
from common.models.schemas import FeatureSpec


@pytest.fixture
def processor(settings):
    return DataProcessor(settings)


def _codes(result):
    return {problem.code for problem in result.problems}


def test_load_data_reads_csv_and_parquet_alike(processor, tmp_path, tiny_frame):
    tiny_frame.to_csv(tmp_path / "d.csv", index=False)
    tiny_frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv = processor.load_data(tmp_path / "d.csv")
    from_parquet = processor.load_data(tmp_path / "d.parquet")
    assert (
        list(from_csv.columns) == list(from_parquet.columns) == ["x", "color", "label"]
    )
    assert len(from_csv) == len(from_parquet) == 120
    np.testing.assert_allclose(from_csv["x"], from_parquet["x"])


def test_load_data_refuses_unknown_format_and_missing_file(processor, tmp_path):
    with pytest.raises(InvalidInputError, match="unsupported format"):
        processor.load_data(tmp_path / "d.xlsx")
    with pytest.raises(DatasetNotFoundError, match="no such dataset"):
        processor.load_data(tmp_path / "missing.csv")


def test_load_data_reports_unparseable_file(processor, tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInputError, match="cannot be read as parquet"):
        processor.load_data(path)


def test_duplicate_csv_headers_are_reported_not_renamed(processor, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,a,label\n1,2,x\n3,4,y\n")
    result = processor.validate_data(processor.load_data(path), "label")
    assert "duplicate_columns" in _codes(result)
    assert "['a']" in next(
        p.message for p in result.problems if p.code == "duplicate_columns"
    )


def test_validation_lists_every_problem_at_once(settings):
    processor = DataProcessor(settings.with_overrides(max_categories=3))
    df = pd.DataFrame(
        {
            "amount": [("oops" if i in (7, 13) else f"{i}.5") for i in range(20)],
            "empty": [None] * 20,
            "city": [f"c{i}" for i in range(20)],
            "label": ["a"] * 20,
        }
    )
    result = processor.validate_data(df, "label")
    assert not result.ok
    assert _codes(result) == {
        "too_few_rows",
        "one_class",
        "non_numeric_values",
        "empty_column",
        "too_many_categories",
    }
    bad = next(p for p in result.problems if p.code == "non_numeric_values")
    assert bad.column == "amount" and bad.rows == [7, 13]
    assert "'oops'" in bad.message


def test_missing_target_is_named_with_the_columns(processor, tiny_frame):
    result = processor.validate_data(tiny_frame, "churn")
    problem = next(p for p in result.problems if p.code == "missing_target")
    assert "'churn'" in problem.message and "'label'" in problem.message


def test_raise_for_problems_carries_every_problem(processor, tiny_frame):
    result = processor.validate_data(tiny_frame.head(10), "label")
    with pytest.raises(UnprocessableDataError) as caught:
        result.raise_for_problems("tiny.csv")
    assert caught.value.status == 422
    assert caught.value.message.startswith("tiny.csv is not usable")
    assert {p["code"] for p in caught.value.details["problems"]} == _codes(result)


def test_infinite_values_and_tiny_classes_are_problems(processor, tiny_frame):
    df = tiny_frame.copy()
    df.loc[3, "x"] = np.inf
    df.loc[5, "label"] = "rare"
    result = processor.validate_data(df, "label")
    assert {"infinite_values", "class_too_small"} <= _codes(result)


def test_schema_is_inferred_with_ranges_and_categories(processor, tiny_frame):
    result = processor.validate_data(tiny_frame, "label")
    assert result.ok
    by_name = {spec.name: spec for spec in result.schema}
    assert by_name["x"].type == "number"
    assert by_name["x"].min == pytest.approx(tiny_frame["x"].min())
    assert by_name["color"] == FeatureSpec(
        "color", "category", categories=["blue", "red"]
    )


def test_expected_schema_overrides_inference_and_reports_missing(processor, tiny_frame):
    schema = [FeatureSpec("x", "number"), FeatureSpec("size", "number")]
    result = processor.validate_data(tiny_frame, "label", schema)
    assert [p.code for p in result.problems] == ["missing_feature"]


def test_preprocess_takes_raw_values_with_missing_and_unseen(processor, tiny_frame):
    result = processor.validate_data(tiny_frame, "label")
    transformer = processor.preprocess(result.schema)
    transformer.fit(coerce_features(tiny_frame, result.schema))
    raw = pd.DataFrame({"x": [None, 0.5], "color": ["green", None]})
    out = transformer.transform(coerce_features(raw, result.schema))
    assert out.shape == (2, 3)  # scaled x + two one-hot columns
    assert np.isfinite(out).all()
    assert out[0, 1:].tolist() == [0.0, 0.0]  # unseen "green" sets no category


def test_example_features_follow_the_schema():
    schema = [
        FeatureSpec("x", "number", 0.0, 10.0),
        FeatureSpec("c", "category", categories=["b", "a"]),
    ]
    assert example_features(schema) == {"x": 5.0, "c": "b"}
