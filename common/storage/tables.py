"""ORM tables. The schema itself is owned by the Alembic migrations beside this file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from common.clock import utcnow

JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JsonType, list[Any]: JsonType}


MODEL_NAME = String(63)


class Model(Base):
    """A named model: its task, what retrains it, and what the user said it is."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(MODEL_NAME, primary_key=True)
    task: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    # Where a retrain takes its base data: {"dataset": name} or {} (labelled
    # predictions only).
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ModelVersion(Base):
    """One trained, registered model: artifact, schema, profile, metrics, provenance."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="candidate")
    model_type: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(200))
    artifact_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[Any]] = mapped_column()
    classes: Mapped[list[Any]] = mapped_column()
    input_schema: Mapped[list[Any]] = mapped_column()
    reference_profile: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column()
    accuracy: Mapped[float] = mapped_column(Float)
    f1_score: Mapped[float] = mapped_column(Float)
    training_data_size: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column()
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str | None] = mapped_column(Text)
    task: Mapped[str] = mapped_column(
        String(20), default="classification", server_default="classification"
    )
    # A registered (not trained) version: its file's format, name and sha256, and
    # the types the operator trusted to load it.
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    # "onnx" where the compiled model matched scikit-learn, "sklearn" where it did
    # not (runtime_reason says why), None before the version was compiled.
    runtime: Mapped[str | None] = mapped_column(String(10))
    runtime_reason: Mapped[str | None] = mapped_column(Text)
    compile_check: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    onnx_path: Mapped[str | None] = mapped_column(Text)
    onnx_sha256: Mapped[str | None] = mapped_column(String(64))
    onnx_size_bytes: Mapped[int | None] = mapped_column(Integer)
    # What batch scoring measured faster for this version: {"runtime", "cores",
    # "rows_per_second": {runtime: rate}, "rows", "measured_at"}; None: not yet.
    batch_runtime: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Champion(Base):
    """The pointer to the serving version; `generation` grows with every change."""

    __tablename__ = "champions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    model_version: Mapped[ModelVersion] = relationship(lazy="joined")


class ChampionHistory(Base):
    """A stack of champions: promote pushes, rollback pops (sets `popped_at`)."""

    __tablename__ = "champion_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    generation: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    pushed_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    popped_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Job(Base):
    """Long work (retraining, batch scoring): state machine, progress and outcome."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_kind_state", "kind", "state"),
        UniqueConstraint("active_key", name="uq_jobs_active_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(MODEL_NAME, index=True)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    task_id: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set to "kind:model" while queued or running: a unique key that allows one
    # active job per single-flight kind and model (retrain), enforced by the database.
    active_key: Mapped[str | None] = mapped_column(String(50))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The Celery worker (hostname) that claimed the job last: one owner at a time.
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # When the job's task was last handed to Redis: a job queued long after that is
    # published again, in case Redis lost the message (the claim makes it harmless).
    published_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class PredictionLog(Base):
    """One answered prediction, written in batches by the API's background writer."""

    __tablename__ = "prediction_logs"
    __table_args__ = (
        Index("ix_prediction_logs_model_created_at", "model", "created_at"),
        # a drift check reads a version's newest rows: the index walks just those
        Index("ix_prediction_logs_version_newest", "model_version_id", "id"),
        Index("ix_prediction_logs_shadow_of", "shadow_of",
              sqlite_where=text("shadow_of IS NOT NULL"),
              postgresql_where=text("shadow_of IS NOT NULL")),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(MODEL_NAME, server_default="default")
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    model_version: Mapped[int] = mapped_column(Integer)
    features: Mapped[dict[str, Any]] = mapped_column()
    prediction: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    latency_ms: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int] = mapped_column(Integer, default=200)
    data_quality: Mapped[list[Any] | None] = mapped_column(JsonType)
    # The rows of the request this row opened, 0 on the request's other rows: request
    # counts and latencies are per request, not per predicted row.
    request_rows: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    # During rollout 12: "champion:12" or "challenger:12" (who answered), or
    # "shadow:12" (a challenger's answer never returned, to the request `shadow_of`).
    arm: Mapped[str] = mapped_column(String(20), default="", server_default="")
    shadow_of: Mapped[str | None] = mapped_column(String(64))


class FeedbackLabel(Base):
    """A true label for a prediction; may arrive before the prediction's log row."""

    __tablename__ = "feedback_labels"
    __table_args__ = (
        Index("ix_feedback_labels_pending", "prediction_id",
              sqlite_where=text("pending"), postgresql_where=text("pending")),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # The label the label rollups count for this prediction (None: not yet), and
    # whether they still have to catch up with `label` (a new label, a changed one,
    # or one that came before its prediction's log row).
    counted_label: Mapped[str | None] = mapped_column(Text)
    pending: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class RollupKey:
    """The key every rollup row starts with: one model version's minute, per arm."""

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(MODEL_NAME)
    minute: Mapped[datetime] = mapped_column(Timestamp)
    # The version's row id (0: a request refused before any model answered): a
    # number is reused after a demo reset, an id never is.
    model_version_id: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(20), default="", server_default="")


class PredictionRollup(RollupKey, Base):
    """One minute of one model version's answers, as one writer (an API process)
    counted them: what `/metrics`, the history and Prometheus read instead of the log.

    Each writer owns its rows and writes absolute values, so a retried write is
    harmless and no two processes update one row; readers add up the writers.
    """

    __tablename__ = "prediction_rollups"
    __table_args__ = (
        UniqueConstraint("model", "minute", "model_version_id", "arm", "writer",
                         name="uq_prediction_rollups_key"),
    )  # fmt: skip

    writer: Mapped[str] = mapped_column(String(80))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    predictions: Mapped[int] = mapped_column(Integer, default=0)
    latency_sum: Mapped[float] = mapped_column(Float, default=0.0)
    # DDSketch bins of request latency (ms), and of a regressor's predicted values.
    latency: Mapped[dict[str, Any]] = mapped_column()
    predicted_values: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    classes: Mapped[dict[str, Any] | None] = mapped_column(JsonType)  # class: count
    confidence_sum: Mapped[float] = mapped_column(Float, default=0.0)
    confidence_count: Mapped[int] = mapped_column(Integer, default=0)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JsonType)  # flag: count
    # A shadow arm's rows compared with the champion's answers to the same requests.
    compared: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    agreed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    difference_sum: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0"
    )


class LabelRollup(RollupKey, Base):
    """Labelled answers of one minute (the minute of the prediction, however late the
    label came): a classifier's counts per (predicted, actual) pair, a regressor's
    error and label sums (predicted and actual empty). Updated by increments, so
    every process may add to one row."""

    __tablename__ = "label_rollups"
    __table_args__ = (
        UniqueConstraint("model", "minute", "model_version_id", "arm", "predicted",
                         "actual", name="uq_label_rollups_key"),
    )  # fmt: skip

    predicted: Mapped[str] = mapped_column(Text, default="")
    actual: Mapped[str] = mapped_column(Text, default="")
    labelled: Mapped[int] = mapped_column(Integer, default=0)
    abs_error_sum: Mapped[float] = mapped_column(Float, default=0.0)
    sq_error_sum: Mapped[float] = mapped_column(Float, default=0.0)
    label_sum: Mapped[float] = mapped_column(Float, default=0.0)
    label_sq_sum: Mapped[float] = mapped_column(Float, default=0.0)


class DriftReport(Base):
    """One drift check of recent inputs against the champion's reference profile."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(MODEL_NAME, server_default="default", index=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(30))
    window_size: Mapped[int] = mapped_column(Integer)
    dataset_drift: Mapped[bool] = mapped_column(Boolean, default=False)
    drift_share: Mapped[float | None] = mapped_column(Float)
    report: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


ACTIVE_ALERT = "state IN ('open', 'acknowledged')"


class Alert(Base):
    """An alert from a rule; at most one open per rule and subject."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_rule_subject_state", "rule", "subject", "state"),
        # Two processes that see the same problem at once open one alert, not two.
        Index("uq_alerts_active", "model", "rule", "subject", unique=True,
              sqlite_where=text(ACTIVE_ALERT), postgresql_where=text(ACTIVE_ALERT)),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str | None] = mapped_column(MODEL_NAME, index=True)
    rule: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="open")
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AlertDelivery(Base):
    """One attempt to deliver an alert to a channel (dashboard, webhook)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(50))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class AuditEvent(Base):
    """Who changed what and why: promotions, rollbacks, registrations, acks."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    model: Mapped[str | None] = mapped_column(MODEL_NAME, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class RetrainingState(Base):
    """The retraining policy's last decision per model, so a person (GET /retraining,
    the dashboard) sees why it acts or waits and when it may act next."""

    __tablename__ = "retraining_states"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    next_action_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_healthy_at: Mapped[datetime | None] = mapped_column(Timestamp)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


RUNNING_ROLLOUT = "state = 'running'"


class Rollout(Base):
    """A challenger version beside its model's champion (shadow, canary or A/B),
    from its start to its outcome, with the evidence it was decided on."""

    __tablename__ = "rollouts"
    __table_args__ = (
        # One rollout per model at a time, however many processes start one.
        Index("uq_rollouts_running", "model", unique=True,
              sqlite_where=text(RUNNING_ROLLOUT),
              postgresql_where=text(RUNNING_ROLLOUT)),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(MODEL_NAME, index=True)
    challenger_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    champion_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    mode: Mapped[str] = mapped_column(String(10))  # shadow, canary, ab
    share: Mapped[float] = mapped_column(Float)
    criteria: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(10), default="running")
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    checked_at: Mapped[datetime | None] = mapped_column(Timestamp)  # monitor's look
    decided_by: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JsonType)

    challenger: Mapped[ModelVersion] = relationship(
        foreign_keys=[challenger_version_id], lazy="joined"
    )
    champion: Mapped[ModelVersion] = relationship(
        foreign_keys=[champion_version_id], lazy="joined"
    )
