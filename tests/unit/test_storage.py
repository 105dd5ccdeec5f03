from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from common.clock import as_utc
from common.storage import log_insert
from common.storage.db import make_engine, session_scope
from common.storage.migrate import (
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from common.storage.tables import Base, Champion, PredictionLog
from tests.factories import make_job

REQUIRED_TABLES = {
    "model_versions",
    "champions",
    "champion_history",
    "jobs",
    "prediction_logs",
    "feedback_labels",
    "drift_reports",
    "alerts",
    "alert_deliveries",
    "audit_events",
}


def test_migrations_create_every_table_at_head(engine):
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert tables >= REQUIRED_TABLES
    assert "metric_snapshots" not in tables  # 0011: the charts read the rollups


def test_migrations_match_the_orm_tables(engine):
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrations_downgrade_and_upgrade_again(engine):
    downgrade_database(engine, "base")
    assert "model_versions" not in inspect(engine).get_table_names()
    upgrade_database(engine)
    upgrade_database(engine)  # idempotent
    assert set(inspect(engine).get_table_names()) >= REQUIRED_TABLES


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(settings):
    engine = make_engine(settings)
    for _ in range(2):  # every connection, not just the first
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 15000
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        engine.dispose()  # the next round opens a fresh connection


def test_a_locked_database_is_explained_by_how_long_the_write_waited(settings, caplog):
    """SQLite says "database is locked" for two things with two fixes; the log
    says which."""
    quick = make_engine(settings.with_overrides(sqlite_busy_timeout_ms=300))
    upgrade_database(quick)
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with quick.connect() as connection, pytest.raises(OperationalError):
            started = time.monotonic()
            connection.execute(text("DELETE FROM audit_events"))
        assert time.monotonic() - started >= 0.3
        assert "busy timeout ran out" in caplog.text
        caplog.clear()
        with quick.connect() as connection:
            connection.execute(text("BEGIN"))
            connection.execute(text("SELECT count(*) FROM audit_events")).all()
            with pytest.raises(OperationalError):  # the read cannot become a write
                connection.execute(text("DELETE FROM audit_events"))
        assert "refused before the busy timeout" in caplog.text
        assert "DELETE FROM audit_events" in caplog.text
    finally:
        holder.rollback()
        holder.close()
        quick.dispose()


def test_foreign_keys_are_enforced(session):
    session.add(Champion(name="default", model_version_id=12345, generation=1))
    with pytest.raises(IntegrityError):
        session.flush()


def test_session_scope_rolls_back_on_error(session_factory):
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        make_job(session)
        raise RuntimeError("boom")
    with session_scope(session_factory) as session:
        assert session.execute(text("SELECT COUNT(*) FROM jobs")).scalar() == 0


def test_json_columns_round_trip(session_factory):
    with session_scope(session_factory) as session:
        job = make_job(session, params={"nested": {"a": [1, 2.5, "x"]}, "flag": True})
        job_id = job.id
    with session_scope(session_factory) as session:
        job = session.get(type(job), job_id)
        assert job.params == {"nested": {"a": [1, 2.5, "x"]}, "flag": True}
        assert job.state == "queued" and job.progress == 0


def test_log_rows_keep_their_time_and_json_as_the_orm_writes_them(session_factory):
    """The log's own insert (not the ORM's) stores times the ORM reads back and
    compares as its own, to the microsecond, whatever zone they came in; JSON that
    came encoded is stored as it came."""
    utc = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    times = [
        utc,
        utc + timedelta(microseconds=7),
        utc.replace(tzinfo=None),
        (utc + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-7))),
    ]
    rows = [{"prediction_id": f"{i:032x}", "model": "default",
             "model_version_id": None, "model_version": 1,
             "features": '{"plan":"basic","age":40}' if i % 2 else {"age": 40.5},
             "prediction": "1", "latency_ms": 1.0, "created_at": at}
            for i, at in enumerate(times)]  # fmt: skip
    with session_scope(session_factory) as session:
        log_insert.insert_log_rows(session, rows)
    with session_scope(session_factory) as session:
        logged = session.scalars(select(PredictionLog).order_by(PredictionLog.id)).all()
        later = session.scalars(select(PredictionLog.prediction_id).where(
            PredictionLog.created_at > utc)).all()  # fmt: skip
    assert [as_utc(row.created_at) for row in logged] == [as_utc(t) for t in times]
    assert later == [f"{1:032x}", f"{3:032x}"]
    assert [row.features for row in logged] == [
        {"age": 40.5},
        {"plan": "basic", "age": 40},
    ] * 2


def test_log_rows_keep_every_value_and_their_order_where_columns_are_empty(
    session_factory,
):
    """Columns left empty on every row of an INSERT's group are left out of it
    (cheaper for the driver); every row still stores exactly what it came with, a
    value beside empty ones included, in the order it came."""
    at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    rows = []
    for i in range(150):  # groups of 64: empty, one row with values, no probabilities
        flagged = i == 100
        rows.append({
            "prediction_id": f"{i:032x}", "model": "default",
            "model_version_id": None, "model_version": 1, "features": {"i": i},
            "prediction": str(i % 2), "latency_ms": float(i),
            "confidence": 0.75 if i >= 64 else None,
            "probabilities": {"0": 0.25, "1": 0.75} if i < 128 else None,
            "data_quality": ["missing:age"] if flagged else None,
            "shadow_of": f"{7:032x}" if flagged else None,
            "arm": "shadow:3" if flagged else "", "created_at": at,
        })  # fmt: skip
    with session_scope(session_factory) as session:
        log_insert.insert_log_rows(session, rows)
    with session_scope(session_factory) as session:
        logged = session.scalars(select(PredictionLog).order_by(PredictionLog.id)).all()
        stored = [
            {"prediction_id": row.prediction_id, "model": row.model,
             "model_version_id": row.model_version_id,
             "model_version": row.model_version, "features": row.features,
             "prediction": row.prediction, "latency_ms": row.latency_ms,
             "confidence": row.confidence, "probabilities": row.probabilities,
             "data_quality": row.data_quality, "shadow_of": row.shadow_of,
             "arm": row.arm, "created_at": as_utc(row.created_at)}
            for row in logged
        ]  # fmt: skip
    assert stored == rows


def test_a_single_model_database_is_carried_into_the_default_model(engine):
    """Rows written before named models (revision 0008) belong to `default` after
    the upgrade: its versions, predictions, jobs (the active retrain keeps
    its single flight) and alerts."""
    downgrade_database(engine, "0008")
    now = "2026-11-30 10:00:00"
    statements = [
        "INSERT INTO model_versions (id, name, version, state, model_type, target, "
        "artifact_path, sha256, size_bytes, feature_names, classes, input_schema, "
        "reference_profile, metrics, accuracy, f1_score, training_data_size, params, "
        "data_fingerprint, created_at) VALUES (1, 'default', 1, 'champion', "
        "'random_forest', 'y', 'default/1/m.joblib', 'ab', 1, '[]', '[0, 1]', '[]', "
        f"'{{}}', '{{}}', 0.9, 0.8, 10, '{{}}', 'cd', '{now}')",
        "INSERT INTO prediction_logs (prediction_id, model_version_id, model_version, "
        "features, prediction, latency_ms, status_code, request_rows, created_at) "
        f"VALUES ('p1', 1, 1, '{{}}', '1', 1.0, 200, 1, '{now}')",
        "INSERT INTO jobs (kind, state, progress, params, cancel_requested, "
        "active_key, attempts, created_at) VALUES ('retrain', 'queued', 0, '{}', "
        f"false, 'retrain', 0, '{now}')",
        "INSERT INTO alerts (rule, subject, severity, state, message, details, "
        f"opened_at, last_seen_at) VALUES ('r', 's', 'warn', 'open', 'm', '{{}}', "
        f"'{now}', '{now}')",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    upgrade_database(engine)
    with engine.connect() as connection:

        def one(sql: str):
            return connection.execute(text(sql)).one()

        assert one("SELECT name, task FROM models") == ("default", "classification")
        assert one("SELECT model FROM prediction_logs") == ("default",)
        assert one("SELECT model, active_key FROM jobs") == (
            "default",
            "retrain:default",
        )
        assert one("SELECT model FROM alerts") == ("default",)
        assert one("SELECT task FROM model_versions") == ("classification",)
