"""Per-minute rollups: every logged row and label counted once, in its own minute,
whatever the order, the retries and the writers; reads equal the raw log's figures."""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from common.clock import as_utc, utcnow
from common.models.evaluation import ModelEvaluator
from common.monitoring import label_rollups
from common.monitoring.feedback import record_feedback
from common.monitoring.metrics import compute_window_metrics, metric_history
from common.monitoring.prediction_log import (
    log_predictions,
    new_prediction_id,
    prepare_predictions,
    write_predictions,
    write_prepared,
)
from common.monitoring.rollups import KEEP_MINUTES, RollupWriter
from common.monitoring.sketches import SketchSum, add_values, encode, new_sketch
from common.storage.db import session_scope
from common.storage.migrate import downgrade_database, upgrade_database
from common.storage.tables import (
    FeedbackLabel,
    LabelRollup,
    Model,
    PredictionLog,
    PredictionRollup,
)

NOW = utcnow().replace(second=30, microsecond=0)


def _row(minutes_ago: float = 0, **fields):
    return {
        "prediction_id": uuid.uuid4().hex, "model": "default",
        "model_version_id": None, "model_version": 1, "features": {},
        "prediction": "1", "confidence": 0.9, "probabilities": None,
        "latency_ms": 5.0, "status_code": 200, "data_quality": None,
        "request_rows": 1, "created_at": NOW - timedelta(minutes=minutes_ago),
        **fields,
    }  # fmt: skip


def _metrics(session_factory, minutes=60, task="classification"):
    with session_scope(session_factory) as session:
        return compute_window_metrics(session, "default", minutes=minutes, until=NOW,
                                      task=task)  # fmt: skip


def test_a_write_that_failed_and_was_retried_counts_once(session_factory):
    writer = RollupWriter()
    rows = [_row() for _ in range(5)]
    with pytest.raises(SQLAlchemyError), session_scope(session_factory) as session:
        writer.prepare(session, rows)  # counted, written, then rolled back
        session.execute(text("SELECT * FROM no_such_table"))
    with session_scope(session_factory) as session:
        touched = write_predictions(session, rows, writer)  # the retry
    writer.adopt(touched)
    with session_scope(session_factory) as session:
        writer.adopt(write_predictions(session, [_row()], writer))
    assert _metrics(session_factory)["request_count"] == 6


def test_a_prepared_write_opens_with_its_insert_and_counts_like_a_direct_one(
    engine, session_factory
):
    """The log writer encodes and counts its rows before its transaction, whose
    first statement is then the insert: SQLite's one write lock is taken at once
    and held for the writes alone, and nothing is read before it (a transaction
    that reads and then writes is refused when another connection wrote between).
    What it stores equals the one-transaction path, a label that came first
    included."""
    writer = RollupWriter()
    early = _row(latency_ms=7.0, prediction="0")
    with session_scope(session_factory) as session:
        record_feedback(session, [(early["prediction_id"], "0")])
    direct = [_row(latency_ms=3.0) for _ in range(3)]
    with session_scope(session_factory) as session:
        writer.adopt(write_predictions(session, direct, writer))
    prepared_rows = [early, *(_row(latency_ms=5.0) for _ in range(69))]
    writer = RollupWriter()  # a new process's: it reads the model's task first
    with session_scope(session_factory) as session:
        prepared = prepare_predictions(session, prepared_rows, writer)
    statements: list[str] = []

    def trace(_conn, _cursor, statement, *_args):
        statements.append(statement.lstrip().split()[0].upper())

    event.listen(engine, "before_cursor_execute", trace)
    try:
        with session_scope(session_factory) as session:
            touched = write_prepared(session, prepared, writer)
    finally:
        event.remove(engine, "before_cursor_execute", trace)
    writer.adopt(touched)
    # (on PostgreSQL the log's COPY goes through the driver, unseen here: the first
    # statement seen is then the rollups' insert, still before any read)
    assert statements[0] == "INSERT", statements
    metrics = _metrics(session_factory)
    assert metrics["request_count"] == 73
    assert metrics["labeled_count"] == 1
    with session_scope(session_factory) as session:
        stored = session.scalars(select(PredictionRollup)).all()
        latencies = session.scalar(select(func.sum(PredictionRollup.latency_sum)))
        logged = session.scalar(select(func.count()).select_from(PredictionLog))
    assert sum(r.requests for r in stored) == 73 and logged == 73
    assert latencies == pytest.approx(3 * 3.0 + 7.0 + 69 * 5.0)


def test_a_failed_write_leaves_the_kept_counts_of_its_minute_untouched(
    session_factory,
):
    """The writer counts into a copy of a minute it already holds: a write that
    fails leaves the held counts (classes, latency sketch) as they were."""
    writer = RollupWriter()
    with session_scope(session_factory) as session:
        rows = [_row(latency_ms=5.0) for _ in range(3)]
        writer.adopt(write_predictions(session, rows, writer))
    failing = [_row(latency_ms=900.0, prediction="0") for _ in range(5)]
    with pytest.raises(SQLAlchemyError), session_scope(session_factory) as session:
        writer.prepare(session, failing)
        session.execute(text("SELECT * FROM no_such_table"))
    with session_scope(session_factory) as session:
        writer.adopt(write_predictions(session, [_row(latency_ms=5.0)], writer))
    metrics = _metrics(session_factory)
    assert metrics["request_count"] == 4
    assert metrics["prediction_count"] == 4
    assert metrics["latency_ms"]["p99"] == pytest.approx(5.0, rel=0.02)


def test_writers_add_up_and_a_late_row_of_a_dropped_minute_is_not_lost(
    session_factory,
):
    first, second = RollupWriter(), RollupWriter()
    with session_scope(session_factory) as session:
        log_predictions(session, [_row(30), _row(30)], first)
        log_predictions(session, [_row(30)], second)
        # the first writer moves on past its memory, then a late row of minute -30
        log_predictions(session, [_row(30 - KEEP_MINUTES - 5)], first)
        log_predictions(session, [_row(30)], first)
        stored = session.scalar(select(func.count()).select_from(PredictionRollup))
    assert stored == 3  # (writer, minute) pairs: first -30, first -15, second -30
    with session_scope(session_factory) as session:
        history = metric_history(session, "default", hours=1)
    by_minute = {h["at"]: h["request_count"] for h in history if h["request_count"]}
    assert sorted(by_minute.values()) == [1, 4]


def test_a_late_label_counts_in_its_prediction_s_minute_and_a_changed_one_moves(
    session_factory,
):
    writer = RollupWriter()
    rows = [_row(20, prediction="1") for _ in range(4)]
    with session_scope(session_factory) as session:
        log_predictions(session, rows, writer)
    with session_scope(session_factory) as session:  # labels 20 minutes later
        record_feedback(session, [(r["prediction_id"], "1") for r in rows[:3]])
        record_feedback(session, [(rows[3]["prediction_id"], "0")])
    m = _metrics(session_factory, minutes=30)
    assert (m["labeled_count"], m["accuracy"]) == (4, 0.75)
    assert _metrics(session_factory, minutes=10)["labeled_count"] == 0  # not "now"
    with session_scope(session_factory) as session:
        record_feedback(session, [(rows[3]["prediction_id"], "1")])  # corrected
    m = _metrics(session_factory, minutes=30)
    assert (m["labeled_count"], m["accuracy"]) == (4, 1.0)


def test_labels_before_their_row_and_labels_nobody_counted_are_counted_once(
    session_factory,
):
    early, missed = _row(), _row()
    with session_scope(session_factory) as session:
        record_feedback(session, [(early["prediction_id"], "1")])  # row not yet logged
        log_predictions(session, [early])  # the writer counts it
        log_predictions(session, [missed])
        # stored, but counted by nobody (as when feedback and the writer race)
        session.add(FeedbackLabel(prediction_id=missed["prediction_id"], label="0"))
    assert _metrics(session_factory)["labeled_count"] == 1
    with session_scope(session_factory) as session:
        assert label_rollups.count_labels(session) == 1  # beat's sweep
        assert label_rollups.count_labels(session) == 0
    m = _metrics(session_factory)
    assert (m["labeled_count"], m["accuracy"]) == (2, 0.5)


def test_a_large_batch_counts_the_labels_of_its_own_rows_and_shadows_only(
    session_factory,
):
    """A logged batch asks for its labels by the range of its (time-ordered) ids:
    a label of another prediction inside that range is left to its own counter."""
    ids = [new_prediction_id() for _ in range(61)]
    outsider = ids.pop(30)  # logged before the batch, its label left pending
    with session_scope(session_factory) as session:
        log_predictions(session, [_row(prediction_id=outsider)])
        session.add(FeedbackLabel(prediction_id=outsider, label="1"))
        record_feedback(session, [(i, "1") for i in ids[:10]])  # before their rows
    writer = RollupWriter()
    with session_scope(session_factory) as session:
        log_predictions(session, [_row(prediction_id=i) for i in ids], writer)
    assert _metrics(session_factory)["labeled_count"] == 10
    with session_scope(session_factory) as session:
        assert label_rollups.count_labels(session) == 1  # the outsider, by the sweep
        shadows = [_row(shadow_of=i, arm="shadow:1", champion_prediction="1")
                   for i in ids]  # fmt: skip
        log_predictions(session, shadows, writer)  # after the labels were counted
        labelled = dict(session.execute(
            select(LabelRollup.arm, func.sum(LabelRollup.labelled))
            .group_by(LabelRollup.arm)
        ).all())  # fmt: skip
    assert labelled == {"": 11, "shadow:1": 10}


def test_a_label_before_its_request_and_shadow_are_logged_together_counts_once(
    session_factory,
):
    """A label that came before its request's row, and that row written in one
    batch with its shadow: each arm counts the label once."""
    request = _row(prediction_id=new_prediction_id())
    shadow = _row(shadow_of=request["prediction_id"], arm="shadow:1",
                  champion_prediction="1")  # fmt: skip
    with session_scope(session_factory) as session:
        record_feedback(session, [(request["prediction_id"], "1")])
        log_predictions(session, [request, shadow])
        labelled = dict(session.execute(
            select(LabelRollup.arm, func.sum(LabelRollup.labelled))
            .group_by(LabelRollup.arm)
        ).all())  # fmt: skip
    assert labelled == {"": 1, "shadow:1": 1}


def test_figures_from_rollups_equal_the_raw_rows(session_factory):
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(2, 0.7, 400)
    rows = [
        _row(float(rng.integers(0, 50)), latency_ms=float(latency),
             prediction=str(rng.integers(0, 3)), confidence=float(rng.uniform(0.4, 1)),
             data_quality=["out_of_range:age"] if i % 10 == 0 else None)
        for i, latency in enumerate(latencies)
    ]  # fmt: skip
    with session_scope(session_factory) as session:
        for start in range(0, 400, 37):  # batches, as the writer sends them
            log_predictions(session, rows[start : start + 37])
        record_feedback(session, [(r["prediction_id"], str(i % 3))
                                  for i, r in enumerate(rows[:200])])  # fmt: skip
    m = _metrics(session_factory)
    assert m["request_count"] == m["prediction_count"] == 400
    for q, key in ((50, "p50"), (95, "p95"), (99, "p99")):
        assert m["latency_ms"][key] == pytest.approx(
            np.percentile(latencies, q, method="lower"), rel=0.011
        )
    assert m["avg_response_time"] == pytest.approx(latencies.mean())
    truth = [str(i % 3) for i in range(200)]
    held = ModelEvaluator().evaluate_predictions(
        truth, [r["prediction"] for r in rows[:200]], ["0", "1", "2"]
    )  # what scikit-learn says of the same labelled rows
    assert m["accuracy"] == pytest.approx(held.accuracy)
    assert (m["precision"], m["recall"], m["f1_score"]) == pytest.approx(
        (held.precision, held.recall, held.f1_score)
    )
    confidences = [r["confidence"] for r in rows]
    assert m["estimated_accuracy"] == pytest.approx(np.mean(confidences))
    assert m["data_quality"] == {"out_of_range": 40}


def test_each_row_counts_in_its_own_minute_whatever_the_order_and_zone(
    session_factory,
):
    """Rows of one batch out of time order, on minute boundaries, naive (as SQLite
    gives them back) and in another zone each land in the minute they belong to."""
    top = NOW.replace(second=0)
    times = [top, top - timedelta(microseconds=1), top + timedelta(seconds=59.999999),
             top - timedelta(minutes=3), top + timedelta(seconds=1),
             top - timedelta(minutes=1, microseconds=1),
             (top - timedelta(minutes=2)).replace(tzinfo=None),
             (top + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=-5))),
             top - timedelta(minutes=1)]  # fmt: skip
    with session_scope(session_factory) as session:
        log_predictions(session, [_row(created_at=at) for at in times])
    with session_scope(session_factory) as session:
        counted = {as_utc(minute): requests for minute, requests in session.execute(
            select(PredictionRollup.minute, PredictionRollup.requests))}  # fmt: skip
    assert counted == {top: 4, top - timedelta(minutes=1): 2,
                       top - timedelta(minutes=2): 2,
                       top - timedelta(minutes=3): 1}  # fmt: skip


def test_a_regressor_s_errors_and_predicted_values(session_factory):
    with session_scope(session_factory) as session:
        session.add(Model(name="default", task="regression", source={}))
    rng = np.random.default_rng(5)
    predicted = rng.normal(100, 20, 300)
    actual = predicted + rng.normal(0, 5, 300)
    rows = [_row(2, prediction=str(p), confidence=None) for p in predicted]
    with session_scope(session_factory) as session:
        log_predictions(session, rows)
        pairs = zip(rows, actual, strict=True)
        record_feedback(session, [(r["prediction_id"], float(a)) for r, a in pairs])
        values = SketchSum().add_all(
            session.scalars(select(PredictionRollup.predicted_values))
        )
    m = _metrics(session_factory, task="regression")
    errors = predicted - actual
    assert m["mae"] == pytest.approx(np.abs(errors).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((errors**2).mean()))
    spread = ((actual - actual.mean()) ** 2).sum()
    assert m["r2"] == pytest.approx(1 - (errors**2).sum() / spread)
    assert m["accuracy"] is None and m["labeled_count"] == 300
    (median,) = values.quantiles(0.5)
    assert median == pytest.approx(np.percentile(predicted, 50, method="lower"),
                                   rel=0.011)  # fmt: skip


def test_macro_scores_match_scikit_learn_with_classes_never_predicted():
    from common.monitoring.metrics import macro_scores

    truth = ["a", "a", "b", "c", "c", "c", "d"]
    predicted = ["a", "b", "b", "c", "a", "a", "a"]
    pairs: dict[tuple[str, str], int] = {}
    for p, t in zip(predicted, truth, strict=True):
        pairs[(p, t)] = pairs.get((p, t), 0) + 1
    held = ModelEvaluator().evaluate_predictions(truth, predicted, ["a", "b", "c", "d"])
    scores = macro_scores(pairs)
    assert scores["correct"] == 3
    assert (scores["precision"], scores["recall"], scores["f1_score"]) == (
        pytest.approx((held.precision, held.recall, held.f1_score))
    )


def test_merged_sketches_read_as_the_library_reads_one_sketch():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.lognormal(1, 1, 3000), -rng.lognormal(0, 1, 200),
                             np.zeros(50)])  # fmt: skip
    whole, parts = new_sketch(), [new_sketch() for _ in range(3)]
    for index, value in enumerate(values):
        whole.add(float(value))
        parts[index % 3].add(float(value))
    merged = SketchSum().add_all(encode(p) for p in parts)
    qs = [0, 0.01, 0.05, 0.06, 0.07, 0.25, 0.5, 0.9, 0.99, 1]
    assert merged.quantiles(*qs) == [whole.get_quantile_value(q) for q in qs]
    assert SketchSum().quantiles(0.5) == [None]


def test_values_added_at_once_fill_the_bins_the_library_fills_one_by_one():
    """The rollups add a batch's latencies in one call; what they store (the bins
    and the count) is what `DDSketch.add` makes of the same values one by one,
    whatever the sign, zeros included, in any number of calls."""
    rng = np.random.default_rng(2)
    values = [float(v) for v in np.concatenate(
        [rng.lognormal(1, 2, 5000), -rng.lognormal(0, 1, 300), np.zeros(40),
         [1e-320, 5e300]])]  # fmt: skip
    rng.shuffle(values)
    one_by_one, at_once = new_sketch(), new_sketch()
    for value in values:
        one_by_one.add(value)
    for start in range(0, len(values), 997):
        add_values(at_once, values[start : start + 997])
    add_values(at_once, [])
    assert encode(at_once) == encode(one_by_one)
    assert at_once.count == one_by_one.count == len(values)
    qs = [0, 0.01, 0.05, 0.5, 0.99, 1]
    assert [at_once.get_quantile_value(q) for q in qs] == [
        one_by_one.get_quantile_value(q) for q in qs
    ]


def test_logged_rows_are_rolled_up_when_the_database_is_upgraded(engine):
    """A deployment upgraded from 0009 keeps its metrics: the log is rolled up and
    its labels are counted by the sweep."""
    downgrade_database(engine, "0009")
    at = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO models (name, task, source, created_at) "
            f"VALUES ('default', 'classification', '{{}}', '{at}')"
        ))  # fmt: skip
        for index in range(30):
            connection.execute(text(
                "INSERT INTO prediction_logs (prediction_id, model, model_version, "
                "features, prediction, latency_ms, status_code, request_rows, "
                f"created_at) VALUES ('p{index}', 'default', 1, '{{}}', "
                f"'{index % 2}', {index + 1}.0, 200, 1, '{at}')"
            ))  # fmt: skip
        for index in range(10):
            connection.execute(text(
                "INSERT INTO feedback_labels (prediction_id, label, created_at, "
                f"updated_at) VALUES ('p{index}', '1', '{at}', '{at}')"
            ))  # fmt: skip
    upgrade_database(engine)
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(engine)
    m = _metrics(factory)
    assert (m["request_count"], m["labeled_count"]) == (30, 0)
    assert m["latency_ms"]["p50"] == pytest.approx(15, rel=0.011)
    with session_scope(factory) as session:
        assert label_rollups.count_labels(session) == 10
    assert (_metrics(factory)["labeled_count"], _metrics(factory)["accuracy"]) == (
        10, 0.5,
    )  # fmt: skip
