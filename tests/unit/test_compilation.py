"""Compiled inference: a pipeline that converts answers as scikit-learn does on
thousands of random valid rows (missing values and unseen categories included); one
that does not convert, or whose conversion does not match, is served by
scikit-learn with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.errors import ArtifactError
from common.models import compilation, registry
from common.models.compilation import compile_pipeline, random_rows
from common.models.runtime import OnnxScorer, SklearnScorer, serving_runtime
from common.models.validation import to_frame
from tests.factories import register_version, train_result
from tests.models.user_code import Doubler

NUMBERS = ["age", "income", "tenure_months"]
RANDOM_ROWS = 3000


def answers_match(pipeline, compiled: OnnxScorer, schema, rows) -> None:
    """The served path's scores (rows straight into ONNX Runtime) and the batch
    path's (a frame's columns) against the pipeline's on the same rows, row by row."""
    frame = to_frame(schema, rows)
    expected = SklearnScorer(pipeline).score_frame(frame)
    for actual in (compiled.score_rows(schema, rows), compiled.score_frame(frame)):
        assert list(actual.predictions) == list(expected.predictions)
        if expected.probabilities is not None:
            difference = np.abs(actual.probabilities - expected.probabilities).max()
            assert difference <= compilation.PROBABILITY_TOLERANCE


@pytest.mark.parametrize("model_type", ["random_forest", "logistic_regression"])
def test_modelops_pipelines_compile_and_answer_as_scikit_learn(
    db_settings, churn_frame, model_type
):
    result = train_result(db_settings, churn_frame, "churned", model_type=model_type)
    compiled = compile_pipeline(result.pipeline, result.input_schema,
                                result.holdout_X, task="classification",
                                classes=result.classes)  # fmt: skip
    assert compiled.runtime == "onnx", compiled.reason
    assert compiled.check["mismatched_classes"] == 0
    assert compiled.check["rows"] >= compilation.RANDOM_ROWS
    scorer = OnnxScorer(compiled.onnx, result.input_schema, task="classification",
                        classes=result.classes)  # fmt: skip
    # Other random rows than the check's: a tenth missing, unseen categories too.
    rows = random_rows(result.input_schema, RANDOM_ROWS, np.random.default_rng(7),
                       reference=result.holdout_X)  # fmt: skip
    assert any(v is None for row in rows for v in row)
    assert any("never-seen-category" in row for row in rows)
    answers_match(result.pipeline, scorer, result.input_schema, rows)


def test_a_pipeline_of_numbers_is_fed_one_matrix_and_answers_as_scikit_learn(
    churn_frame,
):
    """A pipeline that picks its number columns by name converts with one input per
    column; the compiled model takes them as one matrix instead, split in its graph
    (ONNX Runtime's cost per call grows with its inputs), with the same answers on
    random rows, missing numbers included. A schema with a category keeps its
    column inputs."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from common.models.schemas import FeatureSpec

    schema = [FeatureSpec(name, "number") for name in NUMBERS]
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("numbers", make_pipeline(
            SimpleImputer(), StandardScaler()), NUMBERS)])),
        ("model", LogisticRegression()),
    ]).fit(churn_frame[NUMBERS], churn_frame["churned"])  # fmt: skip
    compiled = compile_pipeline(pipeline, schema, churn_frame[NUMBERS],
                                task="classification", classes=[0, 1])  # fmt: skip
    assert compiled.runtime == "onnx", compiled.reason
    scorer = OnnxScorer(compiled.onnx, schema, task="classification", classes=[0, 1])
    inputs = [(i.name, i.shape[1]) for i in scorer.session.get_inputs()]
    assert inputs == [(compilation.MATRIX_INPUT, len(NUMBERS))] and scorer.matrix
    rows = random_rows(schema, RANDOM_ROWS, np.random.default_rng(3),
                       reference=churn_frame[NUMBERS])  # fmt: skip
    assert any(v is None for row in rows for v in row)
    answers_match(pipeline, scorer, schema, rows)
    mixed = [*schema, FeatureSpec("plan", "category", categories=["basic", "pro"])]
    graph_inputs = _onnx_inputs(compilation.convert(
        make_pipeline(ColumnTransformer([("numbers", StandardScaler(), NUMBERS),
                                         ("plan", "drop", ["plan"])]),
                      LogisticRegression()).fit(churn_frame[[*NUMBERS, "plan"]],
                                                churn_frame["churned"]),
        mixed, task="classification"))  # fmt: skip
    assert graph_inputs == [spec.name for spec in mixed]


def _onnx_inputs(model: bytes) -> list[str]:
    import onnx

    return [value.name for value in onnx.load_from_string(model).graph.input]


@pytest.mark.parametrize("model_type", ["random_forest", "logistic_regression"])
def test_the_skipped_option_walk_gives_skl2onnx_s_own_graph(
    db_settings, churn_frame, model_type
):
    """The fast path (options keyed by the final estimator, skl2onnx's walk over
    every fitted attribute skipped) converts to the same bytes as skl2onnx's own
    path with named options."""
    from skl2onnx import to_onnx

    result = train_result(db_settings, churn_frame, "churned", model_type=model_type)
    fast = compilation.convert(result.pipeline, result.input_schema,
                               task="classification")  # fmt: skip
    marked = compilation._with_marked_missing_categories(result.pipeline)
    own = to_onnx(marked, initial_types=compilation._column_inputs(result.input_schema),
                  options={"zipmap": False},
                  target_opset=compilation.TARGET_OPSET)  # fmt: skip
    assert fast == own.SerializeToString()


def test_a_bare_forest_regressor_compiles_and_leaves_missing_numbers_to_sklearn(
    churn_frame,
):
    """scikit-learn's trees send a missing number down the branch that saw the
    most samples; ONNX's do not: the check finds it, and those rows are scored by
    scikit-learn while the compiled model answers the rest."""
    from common.models.schemas import FeatureSpec

    schema = [FeatureSpec(name, "number") for name in NUMBERS]
    frame = churn_frame[NUMBERS].astype(float)
    pipeline = RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0)
    pipeline.fit(frame, churn_frame["monthly_spend"])
    compiled = compile_pipeline(pipeline, schema, frame, task="regression",
                                classes=None)  # fmt: skip
    assert compiled.runtime == "onnx", compiled.reason
    assert compiled.check["missing_numbers"] == "sklearn"
    scorer = OnnxScorer(compiled.onnx, schema, task="regression", classes=None,
                        missing_numbers="sklearn", fallback=pipeline)  # fmt: skip
    rows = random_rows(schema, RANDOM_ROWS, np.random.default_rng(3), reference=frame)
    expected = pipeline.predict(to_frame(schema, rows))
    actual = scorer.score_rows(schema, rows).predictions
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_custom_transformer_is_served_by_scikit_learn_with_its_reason(
    churn_frame,
):
    from common.models.schemas import FeatureSpec

    schema = [FeatureSpec(name, "number") for name in NUMBERS]
    pipeline = make_pipeline(Doubler(), LogisticRegression(max_iter=500))
    pipeline.fit(churn_frame[NUMBERS], churn_frame["churned"])
    compiled = compile_pipeline(pipeline, schema, churn_frame[NUMBERS],
                                task="classification", classes=[0, 1])  # fmt: skip
    assert compiled.onnx is None and compiled.runtime == "sklearn"
    assert compiled.reason.startswith("skl2onnx cannot convert it")
    assert "Doubler" in compiled.reason


def test_a_conversion_that_does_not_match_is_refused(
    db_settings, churn_frame, monkeypatch
):
    """Forced: the converter hands back a model fitted on shuffled labels."""
    result = train_result(db_settings, churn_frame, "churned")
    shuffled = churn_frame.assign(churned=np.random.default_rng(0).permutation(
        churn_frame["churned"].to_numpy()))  # fmt: skip
    other = train_result(db_settings, shuffled, "churned").pipeline
    real_convert = compilation.convert

    def convert_the_other(_pipeline, schema, *, task):
        return real_convert(other, schema, task=task)

    monkeypatch.setattr(compilation, "convert", convert_the_other)
    compiled = compile_pipeline(result.pipeline, result.input_schema,
                                result.holdout_X, task="classification",
                                classes=result.classes)  # fmt: skip
    assert compiled.onnx is None
    assert "probabilities differ by up to" in compiled.reason
    assert compiled.check["max_probability_difference"] > 1e-3


def test_missing_numbers_are_refused_where_scikit_learn_refuses_them(churn_frame):
    """A scaler straight into a linear model fails on NaN in scikit-learn; ONNX
    would answer something: the compiled model refuses too."""
    from common.models.schemas import FeatureSpec

    schema = [FeatureSpec(name, "number") for name in NUMBERS]
    frame = churn_frame[NUMBERS].astype(float)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipeline.fit(frame, churn_frame["churned"])
    compiled = compile_pipeline(pipeline, schema, frame, task="classification",
                                classes=[0, 1])  # fmt: skip
    assert compiled.runtime == "onnx", compiled.reason
    assert compiled.check["missing_numbers"] == "refuse"
    scorer = OnnxScorer(compiled.onnx, schema, task="classification", classes=[0, 1],
                        missing_numbers="refuse")  # fmt: skip
    row = frame.iloc[0].tolist()
    assert scorer.score_rows(schema, [row]).predictions[0] in (0, 1)
    with pytest.raises(ValueError, match="NaN"):
        scorer.score_rows(schema, [[None, *row[1:]]])
    with pytest.raises(ValueError):
        SklearnScorer(pipeline).score_frame(to_frame(schema, [[None, *row[1:]]]))


def test_the_setting_chooses_the_runtime_and_onnx_refuses_what_did_not_match():
    assert serving_runtime("auto", "onnx", None, 1) == ("onnx", None)
    assert serving_runtime("auto", "sklearn", "did not convert", 1) == (
        "sklearn",
        "did not convert",
    )
    assert serving_runtime("sklearn", "onnx", None, 1) == (
        "sklearn",
        "MODELOPS_INFERENCE_RUNTIME=sklearn",
    )
    with pytest.raises(ArtifactError, match="did not convert"):
        serving_runtime("onnx", "sklearn", "did not convert", 3)


def test_a_version_from_before_compiles_on_demand_and_records_it(
    session, db_settings, churn_frame
):
    from tests.factories import register_version

    version = register_version(session, db_settings, churn_frame, "churned",
                               model_type="random_forest")  # fmt: skip
    for column in registry.COMPILATION_COLUMNS:  # as migration 0013 leaves it
        setattr(version, column, None)
    session.flush()
    pipeline = registry.load_model(db_settings, version)
    registry.compile_version(session, db_settings, version, pipeline)
    assert version.runtime == "onnx" and version.onnx_sha256
    scorer = registry.load_scorer(db_settings, version)
    assert scorer.runtime == "onnx"
    frame = churn_frame.drop(columns="churned").head(50)
    schema = registry.input_schema(version)
    rows = to_frame(schema, frame[[s.name for s in schema]].values.tolist())
    assert list(scorer.score_frame(rows).predictions) == list(pipeline.predict(rows))


def test_batch_scoring_scores_every_row_once_and_keeps_the_faster_runtime(
    db_settings, session, churn_frame, monkeypatch
):
    """Each runtime scores its own rows of the first chunk (kept, not thrown away),
    the faster scores the rest; every row comes out once, in order."""
    import time

    from common.jobs import scoring

    monkeypatch.setattr(scoring, "TIMING_ROWS", 100)
    monkeypatch.setattr(scoring, "MIN_TIMING_ROWS", 10)
    version = register_version(session, db_settings, churn_frame, "churned")
    pipeline = registry.load_model(db_settings, version)

    class Counted(SklearnScorer):
        def __init__(self, runtime: str, delay: float) -> None:
            super().__init__(pipeline)
            self.runtime, self.delay, self.rows = runtime, delay, 0

        def score_frame(self, frame: pd.DataFrame):
            self.rows += len(frame)
            time.sleep(self.delay if len(frame) > 10 else 0)
            return super().score_frame(frame)

    slow, quick = Counted("onnx", 0.2), Counted("sklearn", 0.0)
    chunk = churn_frame.drop(columns="churned").assign(row_id=range(len(churn_frame)))
    out, best, rates = scoring._score_choosing(chunk, registry.input_schema(version),
                                               [slow, quick], version)  # fmt: skip
    assert best is quick and rates["sklearn"] > rates["onnx"]
    assert slow.rows == 10 + 100 and quick.rows == 10 + len(chunk) - 100
    assert out.column("row_id").to_pylist() == list(range(len(chunk)))
    features = chunk.drop(columns="row_id")
    assert out.column("prediction").to_pylist() == [
        str(p) for p in pipeline.predict(features)
    ]


def test_batch_scoring_puts_only_ensembles_on_every_core(db_settings, churn_frame):
    """A forest predicts over its trees on threads; a column transformer's n_jobs
    would start processes for every chunk."""
    result = train_result(db_settings, churn_frame, "churned",
                          model_type="random_forest")  # fmt: skip
    pipeline = registry.on_every_core(result.pipeline)
    assert pipeline.named_steps["model"].n_jobs == -1
    assert pipeline.named_steps["preprocess"].n_jobs is None
