"""Request and response schemas (pydantic): they validate bodies and generate the
OpenAPI document, so the two cannot disagree. Shaping functions build the dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    model_validator,
)

from common.clock import to_iso
from common.models.validation import NO_NUL
from common.storage.tables import Champion, Job, ModelVersion
from services.api.model_cache import LoadedModel

FEATURES_DOC = (
    "Raw feature values by name, as listed in GET /model/status `input_schema`: "
    "numbers for numeric features, strings for categories, null for missing."
)
Label = str | int | float | bool
DATASET_NAME = r"^(?!\.\.?$)[^/\\\x00]+$"  # a plain file name: no folders, not . or ..


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


ROUTING_KEY_DOC = (
    "Keeps a caller on one arm of a rollout (say, a customer id); the "
    "`X-Routing-Key` header does the same. Without either, a request is placed at "
    "random."
)


class PredictRequest(Strict):
    """Exactly one of `features` (one row) or `instances` (1 to 1000 rows)."""

    features: dict[str, Any] | None = Field(None, description=FEATURES_DOC)
    instances: list[Any] | None = Field(
        None, min_length=1, max_length=1000, description=FEATURES_DOC
    )
    routing_key: str | None = Field(
        None, min_length=1, max_length=200, description=ROUTING_KEY_DOC
    )

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.features is None) == (self.instances is None):
            raise ValueError("send exactly one of 'features' or 'instances'")
        return self


class FeedbackItem(Strict):
    prediction_id: str = Field(pattern=r"^[0-9a-f]{32}$", examples=["0" * 32])
    label: (
        # no NUL: PostgreSQL keeps none in text
        Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
        | Annotated[int, Field(strict=True)]
        | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    ) = Field(description="A class of a classifier, or a regressor's true value")


FeedbackList = Annotated[list[FeedbackItem], Field(min_length=1, max_length=1000)]


def _feedback_shape(value: Any) -> str:
    return "list" if isinstance(value, list) else "item"


# One label or a list of them, told apart by the body's shape, so that a problem is
# reported for the shape sent (not also "should be a list" for an object).
FeedbackBody = Annotated[
    Annotated[FeedbackItem, Tag("item")] | Annotated[FeedbackList, Tag("list")],
    Discriminator(_feedback_shape),
]


class FeedbackRequest(RootModel[FeedbackBody]):
    """One label, or a list of 1 to 1000 (a later label for the same id wins)."""

    def items(self) -> list[FeedbackItem]:
        return self.root if isinstance(self.root, list) else [self.root]


class ActionRequest(Strict):
    reason: str | None = Field(None, max_length=500)


class RetrainRequest(Strict):
    dataset: str | None = Field(
        None, max_length=200, pattern=DATASET_NAME, description="Base dataset name"
    )
    model_type: (
        Literal["logistic_regression", "random_forest", "hist_gradient_boosting"] | None
    ) = None
    params: dict[str, Any] | None = Field(None, description="Estimator parameters")
    since: datetime | None = Field(
        None,
        description="Train only on the labelled predictions logged since this time "
        "(needs MODELOPS_RETRAIN_MIN_LABELS of them); without it, the base dataset "
        "plus the labelled predictions of the last MODELOPS_RETRAIN_FEEDBACK_DAYS",
    )
    reason: str | None = Field(None, max_length=500)


class BatchScoreRequest(Strict):
    """A CSV in the data directory by name; or send multipart/form-data with `file`."""

    dataset: str = Field(min_length=1, max_length=200, pattern=DATASET_NAME)
    reason: str | None = Field(None, max_length=500)


class BatchScoreUpload(Strict):
    """multipart/form-data: the CSV as `file`, optionally a `reason`; any other
    field is refused (the model is chosen with `?model=`)."""

    file: bytes = Field(json_schema_extra={"format": "binary"})
    reason: str | None = Field(None, max_length=500)


class DemoDriftRequest(Strict):
    scenario: Literal[
        "baseline", "mean_shift", "variance_change", "new_category", "missing_spike",
        "label_shift", "concept_drift", "regime_change",
    ] = "mean_shift"  # fmt: skip


class DemoScenarioOut(BaseModel):
    scenario: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any


class ErrorOut(BaseModel):
    error: ErrorDetail


class PredictionItem(BaseModel):
    prediction: Label = Field(description="A class, or a regressor's value")
    confidence: float | None = Field(
        description="Probability of the predicted class; null where the model gives "
        "no probabilities (a regressor)"
    )
    probabilities: dict[str, float] | None
    prediction_id: str
    data_quality: list[str]


Arm = Literal["champion", "challenger"]
ARM_DOC = (
    "Who answered: `challenger` during a canary or A/B rollout for the requests in "
    "its share, else `champion` (also the `X-Model-Arm` header)."
)


class PredictionOut(PredictionItem):
    model: str
    model_version: int
    arm: Arm = Field(description=ARM_DOC)


class PredictionsOut(BaseModel):
    predictions: list[PredictionItem]
    model: str
    model_version: int
    arm: Arm = Field(description=ARM_DOC)


class FeatureSpecOut(BaseModel):
    name: str
    type: Literal["number", "category"]
    min: float | None
    max: float | None
    categories: list[str] | None


Task = Literal["classification", "regression"]


class ModelVersionOut(BaseModel):
    model_id: str
    name: str
    version: int
    task: Task
    state: Literal["candidate", "champion", "rejected", "retired"]
    created_at: str
    model_type: str
    target: str
    accuracy: float | None = Field(description="Holdout accuracy; null for a regressor")
    f1_score: float | None
    training_data_size: int
    feature_names: list[str]
    classes: list[Label]
    sha256: str
    params: dict[str, Any]
    dataset: str | None
    data_fingerprint: str
    reason: str | None
    job_id: int | None
    metrics: dict[str, Any] = Field(
        description="Holdout metrics: accuracy, precision, recall, F1 and more for a "
        "classifier; mae, rmse and r2 for a regressor"
    )
    provenance: dict[str, Any] | None = Field(
        description="A registered version's file: format, file name, sha256, "
        "trusted types"
    )
    runtime: Literal["onnx", "sklearn"] | None = Field(
        description="`onnx`: compiled, and the compiled model answered as "
        "scikit-learn on the check; `sklearn`: it did not (runtime_reason says "
        "why); null: not compiled yet (compiled on its first load)"
    )
    runtime_reason: str | None = Field(
        description="Why the compiled model is not used, where it is not"
    )
    compile_check: dict[str, Any] | None = Field(
        description="The check of the compiled model against scikit-learn: rows, "
        "mismatched classes, largest probability (or relative value) difference"
    )
    batch_runtime: dict[str, Any] | None = Field(
        description="What batch scoring measured the faster for this version (its "
        "`runtime`, the `rows_per_second` of each, the `cores`, `measured_at`): "
        "later jobs on as many cores use that runtime alone. Null: not measured yet"
    )


class ModelStatusOut(ModelVersionOut):
    generation: int
    loaded_at: str | None
    serving_runtime: Literal["onnx", "sklearn"] | None = Field(
        description="What scores this champion's requests in the process that "
        "answered; null when it has not loaded it"
    )
    serving_reason: str | None = Field(
        description="Why scikit-learn serves it there, when it does"
    )
    input_schema: list[FeatureSpecOut]


class VersionListOut(BaseModel):
    model: str
    champion_version: int | None
    models: list[ModelVersionOut] = Field(description="Every version, newest first")


class ModelSummaryOut(BaseModel):
    name: str
    task: Task
    description: str | None
    created_at: str
    champion_version: int | None
    versions: int
    traffic_per_min: float = Field(description="Requests per minute, last minute")
    prediction_count: int = Field(description="Rows answered in the metrics window")
    accuracy: float | None
    mae: float | None
    drift: str | None = Field(description="Status of the latest drift check")
    open_alerts: int
    loaded: bool = Field(description="In memory in the process that answered")


class ModelsOut(BaseModel):
    default_model: str
    models: list[ModelSummaryOut]


class RegisterUpload(BaseModel):
    """multipart/form-data: a model file and the reference data it was made for."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    artifact: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="A skops file; or joblib/pickle with allow_pickle=true (runs "
        "code when loaded: the operator must allow it, MODELOPS_ALLOW_PICKLE)",
    )
    reference: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="CSV or Parquet with the features and the target column",
    )
    target: str = Field(min_length=1, max_length=200)
    promote: bool = Field(
        False, description="Make it champion (always for a new model)"
    )
    description: str | None = Field(None, max_length=2000)
    allow_pickle: bool = False
    trusted_types: str | None = Field(
        None, description="Comma-separated types to trust in a skops file"
    )
    task: Task | None = Field(
        None, description="Needed only when the estimator does not say"
    )


class RegisteredOut(BaseModel):
    name: str
    version: int
    task: Task
    promoted: bool
    model_type: str
    input_schema: list[FeatureSpecOut]
    metrics: dict[str, Any]
    sha256: str


class ChampionOut(BaseModel):
    version: int
    generation: int
    previous_version: int | None


class FeedbackOutcomeOut(BaseModel):
    prediction_id: str
    label: str | int | float = Field(description="The label as it was sent")
    status: Literal["recorded", "updated", "unchanged"]
    joined: bool


class FeedbackOut(BaseModel):
    results: list[FeedbackOutcomeOut]


JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobOut(BaseModel):
    id: int
    kind: str
    model: str | None
    state: JobStateName
    progress: int
    stage: str | None
    message: str | None
    params: dict[str, Any]
    reason: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    task_id: str | None
    attempts: int
    worker: str | None
    cancel_requested: bool
    status_url: str
    flower_url: str | None


class JobListOut(BaseModel):
    jobs: list[JobOut]
    total: int
    page: int
    page_size: int


class JobAcceptedOut(BaseModel):
    job_id: int
    status_url: str
    job: JobOut


class LatencyOut(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class IntervalOut(BaseModel):
    low: float
    high: float
    level: float


class MetricsOut(BaseModel):
    """The seed's PerformanceMetrics fields and DESIGN.md's live metrics."""

    model_config = ConfigDict(extra="forbid")
    window_start: str = Field(
        description="Start of the window: `window_minutes` ago, or the last demo "
        "reset when that is later"
    )
    window_end: str
    window_minutes: float = Field(description="Length of the window, in minutes")
    model: str
    task: Task
    model_version: int | None = Field(
        description="The version these figures are of; null: every version"
    )
    timestamp: str
    prediction_count: int = Field(description="Predicted rows answered")
    request_count: int = Field(
        description="Requests in the window (a batch of rows is one request)"
    )
    request_rate_per_min: float = Field(
        description="Requests per minute over the last `request_rate_seconds`"
    )
    request_rate_seconds: int
    error_rate: float = Field(description="Share of requests refused or failed")
    latency_ms: LatencyOut = Field(description="Latency percentiles per request")
    avg_response_time: float | None
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1_score: float | None
    accuracy_ci: IntervalOut | None
    mae: float | None = Field(None, description="A regressor's mean absolute error")
    rmse: float | None = None
    r2: float | None = None
    labeled_count: int
    label_coverage: float
    estimated_accuracy: float | None
    data_quality: dict[str, int]
    drift: dict[str, Any] | None
    open_alerts: int


class MetricsHistoryOut(BaseModel):
    hours: float
    snapshots: list[dict[str, Any]]


class DriftOut(BaseModel):
    """The latest drift report (see docs/drift.md)."""

    model_config = ConfigDict(extra="allow")
    id: int
    checked_at: str
    status: Literal["ok", "drift", "insufficient_data"]
    window_size: int
    features: dict[str, Any]
    drift_share: float | None
    dataset_drift: bool


class DriftHistoryOut(BaseModel):
    checks: list[dict[str, Any]]


class AlertOut(BaseModel):
    id: int
    model: str | None
    rule: str
    subject: str
    severity: Literal["warn", "critical"]
    state: Literal["open", "acknowledged", "resolved"]
    message: str
    value: float | None
    threshold: float | None
    details: dict[str, Any]
    opened_at: str
    last_seen_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    deliveries: list[dict[str, Any]]


class AlertListOut(BaseModel):
    alerts: list[AlertOut]


class LiveOut(BaseModel):
    status: Literal["alive"]


class RetrainingRulesOut(BaseModel):
    on_drift: bool
    drift_k_of_n: list[int]
    accuracy_floor: float
    min_labels: int
    recent_rows: int
    cooldown_minutes: int
    retry_minutes: int


class RetrainingOut(BaseModel):
    """The retraining policy's last decision (`GET /retraining`)."""

    model: str
    decision: Literal[
        "not_evaluated", "healthy", "watching", "waiting", "busy", "retrain"
    ] = Field(
        description="healthy: every rule holds; watching: evidence still to come; "
        "waiting: a rule fired but the last attempt's wait is not over; busy: a "
        "retrain is queued or running; retrain: it started one"
    )
    reason: str
    decided_at: str | None
    next_action_at: str | None = Field(description="When it may start a retrain")
    last_healthy_at: str | None
    job_id: int | None
    rules: RetrainingRulesOut


class ProcessOut(BaseModel):
    """A child of `modelops up`, as its supervisor last saw it."""

    name: str
    essential: bool = Field(description="Given up on, it stops the whole system")
    state: Literal["starting", "running", "restarting", "given_up", "stopping"]
    pid: int | None
    started_at: str | None
    exits: int
    restarts: int
    last_exit_code: int | None = Field(description="Negative: killed by that signal")
    last_exit_at: str | None
    next_restart_at: str | None
    message: str | None


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    pid: int = Field(
        description="The API process that answered (one of the server's "
        "workers): each is ready on its own"
    )
    model_version: int | None = None
    rollouts: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Each model's running rollout this process follows (its "
        "challenger loaded here): `rollout_id`, `challenger_version`. Until then "
        "the champion answers (a request for a loading challenger waits for it)",
    )
    processes: dict[str, ProcessOut] | None = Field(
        default=None, description="Under `modelops up`: each supervised process"
    )


def model_version_out(version: ModelVersion) -> dict[str, Any]:
    classifier = version.task == "classification"
    return {
        "model_id": f"{version.name}:{version.version}",
        "name": version.name,
        "version": version.version,
        "task": version.task,
        "state": version.state,
        "created_at": to_iso(version.created_at),
        "model_type": version.model_type,
        "target": version.target,
        "accuracy": version.accuracy if classifier else None,
        "f1_score": version.f1_score if classifier else None,
        "training_data_size": version.training_data_size,
        "feature_names": version.feature_names,
        "classes": version.classes,
        "sha256": version.sha256,
        "params": version.params,
        "dataset": version.dataset,
        "data_fingerprint": version.data_fingerprint,
        "reason": version.reason,
        "job_id": version.job_id,
        "metrics": version.metrics,
        "provenance": version.provenance,
        "runtime": version.runtime,
        "runtime_reason": version.runtime_reason,
        "compile_check": version.compile_check,
        "batch_runtime": version.batch_runtime,
    }


def model_status_out(champion: Champion, loaded: LoadedModel | None) -> dict[str, Any]:
    version = champion.model_version
    serving = loaded is not None and loaded.model_version_id == version.id
    return {
        **model_version_out(version),
        "generation": champion.generation,
        "loaded_at": to_iso(loaded.loaded_at) if serving and loaded else None,
        "serving_runtime": loaded.runtime if serving and loaded else None,
        "serving_reason": loaded.runtime_reason if serving and loaded else None,
        "input_schema": version.input_schema,
    }


def champion_out(champion: Champion, previous: int | None) -> dict[str, Any]:
    return {
        "version": champion.model_version.version,
        "generation": champion.generation,
        "previous_version": previous,
    }


def job_out(job: Job, flower_url: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "model": job.model,
        "state": job.state,
        "progress": job.progress,
        "stage": job.stage,
        "message": job.message,
        "params": job.params,
        "reason": job.reason,
        "result": job.result,
        "error": job.error,
        "created_at": to_iso(job.created_at),
        "started_at": to_iso(job.started_at),
        "finished_at": to_iso(job.finished_at),
        "task_id": job.task_id,
        "attempts": job.attempts,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "status_url": f"/jobs/{job.id}",
        "flower_url": f"{flower_url}/task/{job.task_id}" if job.task_id else None,
    }


class RolloutCriteriaIn(Strict):
    """Any of these overrides the model's `rollout_*` settings for one rollout."""

    min_labels: int | None = Field(None, ge=1, description="Labelled requests per arm")
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    max_error_increase: float | None = Field(None, ge=0, le=100)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_p99_ratio: float | None = Field(None, ge=1, le=1000)
    max_duration_minutes: float | None = Field(None, ge=1)


class RolloutRequest(Strict):
    version: int = Field(ge=1, le=2_147_483_647, description="The challenger")
    mode: Literal["shadow", "canary", "ab"]
    share: float | None = Field(
        None, ge=0.01, le=1,
        description="Of requests: shadowed (default 1), answered by a canary "
        "(default MODELOPS_ROLLOUT_SHARE) or the challenger's side of an A/B test "
        "(default 0.5)",
    )  # fmt: skip
    criteria: RolloutCriteriaIn | None = None


class RolloutOut(BaseModel):
    id: int
    model: str
    mode: Literal["shadow", "canary", "ab"]
    share: float
    state: Literal["running", "promoted", "aborted"]
    challenger: dict[str, Any]
    champion: dict[str, Any]
    criteria: dict[str, Any]
    started_at: str
    started_by: str
    ended_at: str | None
    checked_at: str | None = Field(
        description="When the monitor last judged it (found it undecided, while it "
        "runs)"
    )
    decided_by: str | None
    reason: str | None
    evidence: dict[str, Any] | None


class RolloutCurrentOut(RolloutOut):
    comparison: dict[str, Any] = Field(
        description="Each arm's requests, error rate, latency, labelled requests and "
        "accuracy (a regressor: MAE) with 95% intervals; the difference with its "
        "interval; a shadow's agreement with the champion"
    )
    verdict: dict[str, Any] = Field(
        description="What the monitor would decide now: promote, abort or continue"
    )


class RolloutsOut(BaseModel):
    model: str
    rollouts: list[RolloutOut]
