from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sqlalchemy import select

from common.data import synthetic
from common.errors import ConflictError, NotFoundError
from common.jobs import scoring, tracker
from common.models import registry
from common.models.importing import ImportRequest, register_file
from common.storage.db import session_scope
from common.storage.tables import Job, ModelVersion
from tests.conftest import train_champion


@pytest.fixture
def champion_settings(session_factory, db_settings):
    with session_scope(session_factory) as session:
        train_champion(session, db_settings, reason="start")
    Path(db_settings.data_dir).mkdir(parents=True, exist_ok=True)
    return db_settings.with_overrides(score_chunk_rows=700)


def _write(settings, name, frame):
    frame.to_csv(Path(settings.data_dir) / name, index=False)


def _score(session_factory, settings, name, model=None):
    with session_scope(session_factory) as session:
        job_id = tracker.create_job(session, "batch_score", {"source": name}, "t",
                                    model=model).id  # fmt: skip
    stages = []
    tracker.run_job(
        session_factory,
        job_id,
        "t",
        lambda job, progress: scoring.run_batch_score(
            session_factory,
            settings,
            job,
            lambda p, s: (stages.append(p), progress(p, s)),
        ),
    )
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
    return job, stages


def test_scores_every_row_in_chunks_and_passes_other_columns(
    session_factory, champion_settings
):
    frame = synthetic.generate("baseline", 3000, 4).rename(columns={"churned": "label"})
    frame.insert(0, "customer_id", [f"c{i}" for i in range(len(frame))])
    _write(champion_settings, "customers.csv", frame)
    job, stages = _score(session_factory, champion_settings, "customers.csv")
    assert job.state == "succeeded", job.error
    assert job.result["rows"] == 3000 and job.result["invalid"] == 0
    assert len([s for s in stages if s > 2]) == 5  # one report per chunk of 700
    out = pd.read_csv(Path(champion_settings.data_dir) / job.result["output"])
    assert list(out.columns) == [
        "customer_id",
        "label",
        "prediction",
        "confidence",
        "probability_0",
        "probability_1",
        "error",
        "model_version",
    ]
    assert out["customer_id"].tolist() == frame["customer_id"].tolist()
    assert (out["model_version"] == 1).all()
    accuracy = (out["prediction"] == out["label"]).mean()
    assert accuracy > 0.7


def test_the_runtime_a_job_measured_faster_is_kept_and_later_jobs_use_it_alone(
    session_factory, champion_settings, monkeypatch
):
    """The first job times both runtimes on its first rows; the version keeps the
    outcome, and the next job loads that runtime alone and answers the same."""
    monkeypatch.setattr(scoring, "TIMING_ROWS", 100)
    monkeypatch.setattr(scoring, "MIN_TIMING_ROWS", 10)
    loaded: list[list[str]] = []
    batch_scorers = registry.batch_scorers

    def recorded(*args, **kwargs):
        scorers = batch_scorers(*args, **kwargs)
        loaded.append([s.runtime for s in scorers])
        return scorers

    monkeypatch.setattr(registry, "batch_scorers", recorded)
    _write(champion_settings, "rows.csv", synthetic.generate("baseline", 1500, 5))
    first, _ = _score(session_factory, champion_settings, "rows.csv")
    with session_scope(session_factory) as session:
        measured = session.scalar(select(ModelVersion.batch_runtime))
    assert sorted(measured["rows_per_second"]) == ["onnx", "sklearn"]
    assert measured["cores"] == os.cpu_count()
    second, _ = _score(session_factory, champion_settings, "rows.csv")
    assert loaded == [["onnx", "sklearn"], [measured["runtime"]]]
    assert second.state == "succeeded", second.error
    answers = [pd.read_csv(Path(champion_settings.data_dir) / job.result["output"])
               for job in (first, second)]  # fmt: skip
    assert answers[0]["prediction"].tolist() == answers[1]["prediction"].tolist()


def test_a_one_chunk_file_read_on_every_core_scores_as_the_chunked_reader_does(
    session_factory, champion_settings, monkeypatch
):
    """A file of one chunk goes through Arrow's multithreaded reader, a larger one
    through pandas' chunked reader: the same rows give the same output, missing
    texts ("NA", "None", empty cells), ids with leading zeros and text labels
    included."""
    whole: list[bool] = []
    read_whole = scoring._read_whole
    monkeypatch.setattr(scoring, "_read_whole", lambda *args: whole.append(
        (table := read_whole(*args)) is not None) or table)  # fmt: skip
    frame = synthetic.generate("baseline", 600, 7).astype(object)
    frame.insert(0, "customer_id", [f"{i:05d}" for i in range(len(frame))])
    frame["churned"] = frame["churned"].map({0: "stayed", 1: "left"})
    frame.loc[[3, 40], "plan"] = "NA"
    frame.loc[7, "region"] = "None"
    frame.loc[[9, 300], "age"] = ""
    frame.loc[11, "customer_id"] = ""
    _write(champion_settings, "rows.csv", frame)
    outputs = []
    for chunk_rows in (600, 100):
        job, _ = _score(session_factory, champion_settings.with_overrides(
            score_chunk_rows=chunk_rows), "rows.csv")  # fmt: skip
        assert job.state == "succeeded", job.error
        assert (job.result["rows"], job.result["invalid"]) == (600, 0)
        outputs.append((Path(champion_settings.data_dir) / job.result["output"])
                       .read_bytes())  # fmt: skip
    assert whole == [True]  # the first job read the file whole, the second chunked
    assert outputs[0] == outputs[1]
    out = pd.read_csv(io.BytesIO(outputs[0]), dtype=str, keep_default_na=False)
    assert out["customer_id"].tolist()[:3] == ["00000", "00001", "00002"]
    assert out.loc[11, "customer_id"] == ""
    assert set(out["churned"]) == {"stayed", "left"}
    # each row's class is its most probable one (rows with a missing age included)
    probabilities = out[["probability_0", "probability_1"]].astype(float)
    best = probabilities.to_numpy().argmax(axis=1).astype(str)
    assert (out["prediction"] == best).all()


def test_invalid_rows_get_an_error_and_the_rest_is_scored(
    session_factory, champion_settings
):
    frame = synthetic.generate("baseline", 50, 4).drop(columns="churned").astype(object)
    frame.loc[3, "age"] = "forty"
    frame.loc[8, "income"] = "inf"
    frame.loc[9, "support_calls"] = "1e300"
    frame.loc[11, "plan"] = None  # missing: imputed, not an error
    _write(champion_settings, "mixed.csv", frame)
    job, _ = _score(session_factory, champion_settings, "mixed.csv")
    assert (job.result["rows"], job.result["invalid"], job.result["scored"]) == (
        50,
        3,
        47,
    )
    out = pd.read_csv(
        Path(champion_settings.data_dir) / job.result["output"], keep_default_na=False
    )
    assert out.loc[3, "error"] == "age: not a number"
    assert out.loc[8, "error"] == "income: not finite"
    assert out.loc[9, "error"] == "support_calls: too large"
    assert out.loc[3, "prediction"] == "" and out.loc[11, "prediction"] != ""


def test_a_regressor_writes_its_values_and_an_empty_cell_for_an_invalid_row(
    session_factory, champion_settings, churn_frame, tmp_path
):
    """A registered regressor's job writes one predicted value per row (no
    confidence, no probabilities): the pipeline's own values, to float32's
    precision where ONNX Runtime scores, and an empty cell beside an error."""
    features = ["age", "tenure_months", "plan", "region"]
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", "passthrough", ["age", "tenure_months"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ])),
        ("model", RandomForestRegressor(n_estimators=10, random_state=0)),
    ]).fit(churn_frame[features], churn_frame["income"])  # fmt: skip
    artifact, reference = tmp_path / "income.skops", tmp_path / "reference.csv"
    sio.dump(pipeline, artifact)
    churn_frame[[*features, "income"]].to_csv(reference, index=False)
    with session_scope(session_factory) as session:
        register_file(session, champion_settings, ImportRequest(
            name="income", artifact=artifact, filename=artifact.name,
            reference=reference, target="income"))  # fmt: skip
    rows = churn_frame[features].astype(object).reset_index(drop=True)
    rows.loc[5, "age"] = "old"
    rows.insert(0, "id", [f"i{i}" for i in range(len(rows))])
    _write(champion_settings, "incomes.csv", rows)
    in_chunks = champion_settings.with_overrides(score_chunk_rows=150)
    job, _ = _score(session_factory, in_chunks, "incomes.csv", model="income")
    assert job.state == "succeeded", job.error
    assert (job.result["rows"], job.result["invalid"]) == (len(rows), 1)
    out = pd.read_csv(Path(champion_settings.data_dir) / job.result["output"],
                      keep_default_na=False)  # fmt: skip
    assert list(out.columns) == ["id", "prediction", "error", "model_version"]
    assert (out.loc[5, "prediction"], out.loc[5, "error"]) == ("", "age: not a number")
    valid = out.index != 5
    expected = pipeline.predict(churn_frame[features][valid])
    got = out.loc[valid, "prediction"].astype(float).to_numpy()
    assert np.allclose(got, expected, rtol=1e-5)
    assert out["id"].tolist() == rows["id"].tolist()


def test_a_file_without_a_feature_fails_and_writes_no_output(
    session_factory, champion_settings
):
    frame = synthetic.generate("baseline", 50, 4).drop(columns=["churned", "age"])
    frame["prediction"] = 1
    _write(champion_settings, "partial.csv", frame)
    job, _ = _score(session_factory, champion_settings, "partial.csv")
    assert job.state == "failed"
    assert {(p["code"], p["column"]) for p in job.error["details"]["problems"]} == {
        ("missing_feature", "age"),
        ("reserved_column", "prediction"),
    }
    assert job.error["message"] == (
        "cannot score this file (missing features: age; "
        "reserved column names: prediction)"
    )
    assert not scoring.output_path(champion_settings, job.id).exists()
    assert not list(Path(champion_settings.data_dir, "outputs").glob("*.partial"))


def test_a_binary_file_fails_as_not_utf8_text_and_its_stage_says_failed(
    session_factory, champion_settings
):
    (Path(champion_settings.data_dir) / "photo.csv").write_bytes(
        bytes(range(128, 256)) * 40
    )
    job, _ = _score(session_factory, champion_settings, "photo.csv")
    assert (job.state, job.stage) == ("failed", "failed")
    assert job.error["type"] == "UnprocessableDataError"
    assert job.error["message"].startswith("the file is not a UTF-8 CSV (it holds")
    frame = synthetic.generate("baseline", 20, 4).drop(columns=["churned"])
    frame["error"] = ""
    _write(champion_settings, "reserved.csv", frame)
    job, _ = _score(session_factory, champion_settings, "reserved.csv")
    assert (
        job.error["message"] == "cannot score this file (reserved column names: error)"
    )


def test_a_file_that_breaks_past_its_first_chunks_fails_and_leaves_nothing(
    session_factory, champion_settings
):
    """A bad line in the fourth chunk fails the job with its reason, after the
    first three chunks were scored and written, and leaves no output and no partial
    file."""
    frame = synthetic.generate("baseline", 3000, 4).drop(columns=["churned"])
    _write(champion_settings, "broken.csv", frame)
    path = Path(champion_settings.data_dir) / "broken.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2500] = lines[2500].rstrip("\n") + ",1,2,3\n"  # more fields than the header
    path.write_text("".join(lines))
    job, stages = _score(session_factory, champion_settings, "broken.csv")
    assert job.state == "failed"
    assert job.error["message"].startswith("the file is not a readable CSV")
    assert len([s for s in stages if s > 2]) == 3  # three chunks of 700 scored first
    outputs = Path(champion_settings.data_dir, "outputs")
    assert not list(outputs.glob("*")), list(outputs.glob("*"))


def test_result_file_is_served_only_for_a_succeeded_scoring_job(
    session_factory, champion_settings
):
    _write(
        champion_settings,
        "ok.csv",
        synthetic.generate("baseline", 20, 1).drop(columns="churned"),
    )
    job, _ = _score(session_factory, champion_settings, "ok.csv")
    assert scoring.get_result_file(champion_settings, job).is_file()
    with session_scope(session_factory) as session:
        queued = tracker.create_job(session, "batch_score", {"source": "ok.csv"}, "t")
        with pytest.raises(NotFoundError, match="not ready"):
            scoring.get_result_file(champion_settings, queued)
        failed = tracker.finish_job(
            session, queued.id, tracker.JobState.FAILED, error={}
        )
        with pytest.raises(ConflictError):
            scoring.get_result_file(champion_settings, failed)


def test_old_uploads_and_outputs_are_removed(champion_settings):
    folder = Path(champion_settings.data_dir) / "uploads"
    folder.mkdir(parents=True)
    old, new = folder / "old.csv", folder / "new.csv"
    old.write_text("a\n")
    new.write_text("a\n")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    assert scoring.remove_old_files(champion_settings, time.time()) == 1
    assert not old.exists() and new.exists()
