"""The one `Settings` object: defaults < `modelops.toml` < `MODELOPS_*` environment.

Only entrypoints call `get_settings()`; everything else receives `settings`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_type_hints

from common.errors import ConfigError
from common.monitoring.alert_rules import (
    DEFAULT_ALERT_RULES,
    AlertRule,
    parse_alert_rules,
)

ENV_PREFIX = "MODELOPS_"
MODEL_TYPES = ("logistic_regression", "random_forest", "hist_gradient_boosting")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEMO_MODES = ("auto", "on", "off")
INFERENCE_RUNTIMES = ("auto", "sklearn", "onnx")
ROLLOUT_MODES = ("direct", "shadow", "canary")  # how the policy's challengers go out
# Settings a model may override under `[models.NAME]`: how it is watched, judged,
# retrained and served; not where the deployment keeps things or how it runs.
PER_MODEL = (
    "alert_rules", "test_size", "min_training_rows", "min_class_rows",
    "max_categories", "profile_bins", "profile_sample_size", "retrain_feedback_days",
    "gate_f1_tolerance", "metrics_window_minutes", "drift_window_rows",
    "drift_min_rows", "drift_psi_threshold", "drift_alpha", "drift_share_threshold",
    "retrain_cron", "retrain_on_drift", "retrain_drift_k", "retrain_drift_n",
    "retrain_accuracy_floor", "retrain_min_labels", "retrain_recent_rows",
    "retrain_cooldown_minutes", "retrain_retry_minutes", "rollout_mode",
    "rollout_share", "rollout_min_labels", "rollout_max_accuracy_drop",
    "rollout_max_error_increase", "rollout_max_error_rate", "rollout_max_p99_ratio",
    "rollout_max_duration_minutes",
)  # fmt: skip
MODEL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
SKLEARN_TREES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
RENAMED = {"MODELOPS_MODEL_NAME": "MODELOPS_DEFAULT_MODEL"}
# Settings that no longer do anything: refused with the reason (no dead knobs).
RETIRED = {
    "metrics_snapshot_seconds": "the history charts read the per-minute rollups; "
    "beat no longer stores metric snapshots",
    "snapshot_retention_days": "metric snapshots are no longer stored",
}


def _doc(text: str, default: Any) -> Any:
    if default is None:  # a table: empty unless modelops.toml has one; settings stay
        # hashable (caches key on them) without it, the other fields tell them apart
        return field(default_factory=dict, hash=False, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class Settings:
    """Every tunable of ModelOps. Empty path settings are derived from `home`."""

    home: str = _doc(
        "Directory holding all local state (database, artifacts, data); relative to "
        "the working directory. Every other relative path is relative to it.",
        "var",
    )
    config_file: str = _doc(
        "TOML file layered under the environment; ignored when missing.",
        "modelops.toml",
    )
    database_url: str = _doc(
        "SQLAlchemy URL; empty means SQLite at `<home>/modelops.db` (a relative "
        "SQLite path is under `<home>`).",
        "",
    )
    artifact_dir: str = _doc(
        "Model artifacts: a directory or any fsspec URL (s3://bucket/prefix, gs://…, "
        "with its backend installed); empty means `<home>/artifacts`.",
        "",
    )
    data_dir: str = _doc("Named datasets and uploads; empty means `<home>/data`.", "")
    redis_url: str = _doc(
        "Broker and result backend; empty makes `modelops up` start a private Redis.",
        "",
    )
    api_key: str = _doc(
        "Key for mutating calls; empty makes `modelops up` generate and keep one.", ""
    )
    predict_auth: bool = _doc(
        "Require the API key on /predict and /feedback too.", False
    )
    read_auth: bool = _doc(
        "Require the API key on every read too (metrics, models, jobs, alerts, drift, "
        "OpenAPI). Always in force when the API listens on anything but loopback.",
        False,
    )
    probes_auth: bool = _doc(
        "Require the API key on /livez, /readyz and /metrics/prometheus as well; they "
        "are open by default, for health checks and Prometheus.",
        False,
    )
    api_host: str = _doc("Address the API and dashboard bind to.", "127.0.0.1")
    api_port: int = _doc("Port of the API and dashboard.", 8000)
    api_workers: int = _doc("API server processes (granian workers).", 2)
    api_threads: int = _doc(
        "Requests each API process answers at once (its threads); more wait in the "
        "listen queue. Eight keep two cores busy with compiled models; more threads "
        "only contend for the GIL (docs/performance.md).",
        8,
    )
    flower_host: str = _doc("Address Flower binds to.", "127.0.0.1")
    flower_port: int = _doc("Port of Flower.", 5555)
    worker_concurrency: int = _doc("Celery worker processes started by `up`.", 2)
    worker_max_memory_mb: int = _doc(
        "A worker process whose resident memory passes this after a task is replaced "
        "by a fresh one (the task finishes first): memory stays bounded over months "
        "whatever a library keeps.",
        1024,
    )
    log_level: str = _doc("DEBUG, INFO, WARNING, ERROR or CRITICAL.", "INFO")
    sqlite_busy_timeout_ms: int = _doc(
        "How long a SQLite writer waits for a lock before failing.", 15000
    )
    random_state: int = _doc("Seed for splits, models and synthetic data.", 42)
    test_size: float = _doc("Share of rows held out for evaluation (stratified).", 0.2)
    min_training_rows: int = _doc("Fewest rows a training set may have.", 50)
    min_class_rows: int = _doc("Fewest rows each class needs in a training set.", 2)
    max_categories: int = _doc(
        "Most distinct values a categorical feature may have.", 100
    )
    profile_bins: int = _doc(
        "Quantile bins per numeric feature in the reference profile.", 10
    )
    profile_sample_size: int = _doc(
        "Rows kept per numeric feature in the reference profile.", 1000
    )
    demo: str = _doc(
        "Demo mode: the /demo routes (reset, traffic scenario) and the dashboard's "
        "Demo view. `auto` turns it on under `modelops up` (the embedded default) "
        "and off everywhere else (docker-compose, an API server of your own); `on` or "
        "`off` decide. A demo reset clears the deployment's predictions, labels and "
        "versions.",
        "auto",
    )
    demo_dataset: str = _doc("Dataset the demo model is trained on.", "synthetic")
    demo_model_type: str = _doc("Model type of the demo model.", "random_forest")
    demo_rows: int = _doc("Rows of synthetic data for the demo model.", 5000)
    default_model: str = _doc(
        "The model the root routes (/predict, /model/status, /model/retrain, "
        "/metrics, /drift, ...) act on, and that /readyz waits for.",
        "default",
    )
    demo_model: str = _doc(
        "The model the demo trains, drives and resets; no other model is touched "
        "by a demo control.",
        "default",
    )
    models: Mapping[str, Mapping[str, Any]] = _doc(
        "Per-model overrides: `[models.NAME]` tables in modelops.toml of how a model "
        "is watched, judged and retrained (docs/models.md lists the keys).",
        None,
    )
    model_cache_mb: int = _doc(
        "Memory budget of the champions each API process keeps loaded; the least "
        "recently used one is dropped to make room (a model larger than the budget "
        "still serves, alone).",
        1024,
    )
    inference_runtime: str = _doc(
        "What scores requests and batches: `auto` (ONNX Runtime for versions whose "
        "compiled model matched scikit-learn, scikit-learn for the rest), "
        "`sklearn` (always), or `onnx` (refuse to serve a version that did not "
        "compile exactly).",
        "auto",
    )
    allow_pickle: bool = _doc(
        "Let `POST /models` register joblib or pickle files (with "
        "`allow_pickle=true` in the request). Loading one runs any code it holds: "
        "turn this on only when everyone with the API key may run code on this "
        "host. `modelops register --allow-pickle` needs no setting.",
        False,
    )
    trusted_types: tuple[str, ...] = _doc(
        "Types a skops file may hold beyond skops' own trusted set, for every "
        "registration (comma-separated, e.g. `mylib.MyTransformer`). The default is "
        "scikit-learn's own compiled tree types, which skops leaves out of its set: "
        "every forest and boosted model holds them. Empty trusts skops' set alone.",
        SKLEARN_TREES,
    )
    register_timeout_seconds: int = _doc(
        "Longest a registration may take to load and check a model file in its "
        "own process.",
        120,
    )
    register_memory_mb: int = _doc(
        "Address-space limit of that process: a model file that needs more is "
        "refused, not allowed to exhaust the host.",
        4096,
    )
    model_name: str = field(default="", metadata={"internal": True})
    predict_timeout_ms: int = _doc(
        "Time budget of one /predict call; past it the answer is 408 (a compiled "
        "version, scored in the request thread in microseconds, is answered).",
        2000,
    )
    max_batch_instances: int = _doc("Most rows one /predict call may carry.", 1000)
    max_request_bytes: int = _doc(
        "Largest JSON body accepted; larger ones get 413 unread.", 4 * 1024 * 1024
    )
    microbatch_max_rows: int = _doc(
        "Most rows the API predicts together across concurrent requests.", 64
    )
    microbatch_wait_ms: float = _doc(
        "Under load (the last batch was shared), how long a batch waits for more "
        "requests; a lone request never waits.",
        2.0,
    )
    model_poll_ms: int = _doc(
        "How often each API process checks for a new champion generation.", 500
    )
    prediction_log_batch_size: int = _doc(
        "Prediction log rows written per database transaction (a deep spool goes "
        "out in up to ten at once). Each transaction also writes its minutes' "
        "rollups: 1000 cost a tenth less CPU per request than 200 at 4,000 req/s.",
        1000,
    )
    prediction_log_flush_ms: int = _doc(
        "Longest a prediction log row waits in memory before being written. Under "
        "sustained load a longer wait makes larger transactions: 2000 (with a batch "
        "size of 5000) cut the log's CPU by a fifth at 4,800 req/s, the rows coming "
        "up to 1.5 s later (docs/performance.md).",
        500,
    )
    prediction_log_spool_size: int = _doc(
        "Most unwritten log rows a log process keeps while the database is "
        "unavailable (the oldest are dropped, counted); its API process holds as "
        "many more while the log process cannot take them.",
        100_000,
    )
    prediction_logging: bool = _doc("Write every answered prediction to the log.", True)
    prediction_log_process: bool = _doc(
        "Write each API process's prediction log from a process of its own (true), "
        "which leaves the API process's CPU and GIL to its requests, or from a "
        "thread of the API process (false: hosts that cannot start processes).",
        True,
    )
    prediction_log_nice: int = _doc(
        "CPU niceness (0-19) of each API process's log process: at 10 the requests "
        "get the cores first on a busy machine and the log keeps up with what they "
        "leave (its spool absorbs the lag). PostgreSQL only: on SQLite it writes at "
        "normal priority (SQLite has one write lock).",
        10,
    )
    retrain_time_limit_seconds: int = _doc(
        "Hard time limit of a retraining job; the soft limit is 90% of it.", 1800
    )
    default_time_limit_seconds: int = _doc(
        "Hard time limit of short tasks; the soft limit is 90% of it.", 300
    )
    broker_publish_timeout_seconds: float = _doc(
        "Longest an API call waits to hand a job to Redis before answering 503.", 2.0
    )
    retrain_feedback_days: float = _doc(
        "Labelled predictions of this many recent days join the training set (and "
        "are kept that long).",
        30.0,
    )
    gate_f1_tolerance: float = _doc(
        "A challenger is promoted unless its F1 is below the champion's by more.", 0.01
    )
    jobs_page_size: int = _doc("Jobs per page of GET /jobs (at most 200).", 50)
    score_time_limit_seconds: int = _doc(
        "Hard time limit of a batch-scoring job; the soft limit is 90% of it.", 3600
    )
    score_chunk_rows: int = _doc(
        "Rows a batch-scoring job reads, predicts and writes at a time.", 100_000
    )
    upload_max_bytes: int = _doc(
        "Largest CSV upload for batch scoring; larger ones get 413.", 200 * 1024 * 1024
    )
    job_heartbeat_seconds: int = _doc(
        "How often a running job records that its worker is alive.", 10
    )
    job_stall_seconds: int = _doc(
        "A running job silent this long lost its worker and is queued again.", 40
    )
    job_republish_seconds: int = _doc(
        "A job still queued this long after its task was published is published "
        "again, in case Redis lost it (a restart without AOF).",
        600,
    )
    file_retention_hours: int = _doc(
        "Uploads and scoring outputs older than this are removed by beat.", 168
    )
    prediction_retention_days: float = _doc(
        "Raw prediction log rows older than this are deleted by beat (a labelled "
        "one stays while retrain_feedback_days still reaches it); their counts "
        "live on in the rollups.",
        30.0,
    )
    rollup_retention_days: float = _doc(
        "Per-minute rollups (what /metrics and the charts read) are kept this long.",
        365.0,
    )
    drift_report_retention_days: float = _doc("Drift reports are kept this long.", 90.0)
    job_retention_days: float = _doc(
        "Finished jobs are kept this long (those that made a version, always).", 90.0
    )
    alert_retention_days: float = _doc(
        "Resolved alerts (and their webhook deliveries) are kept this long.", 90.0
    )
    prune_seconds: int = _doc("How often beat deletes what aged out.", 600)
    prune_batch_rows: int = _doc(
        "Rows deleted per transaction when pruning: small, so the prediction log "
        "writer never waits long.",
        5000,
    )
    metrics_window_minutes: int = _doc("The window GET /metrics reports on.", 15)
    drift_check_seconds: int = _doc(
        "How often beat checks the champion's recent inputs for drift.", 300
    )
    monitor_interval_seconds: int = _doc(
        "How often beat evaluates the alert rules and the retraining policy.", 60
    )
    drift_window_rows: int = _doc(
        "How many of the champion's most recent inputs a drift check reads.", 1000
    )
    drift_min_rows: int = _doc(
        "Fewest recent inputs a drift check needs; fewer reports insufficient data.",
        200,
    )
    drift_psi_threshold: float = _doc(
        "PSI at or above which a feature's shift is large enough to matter.", 0.1
    )
    drift_alpha: float = _doc(
        "Significance level of the drift tests, after correction across features.", 0.01
    )
    drift_share_threshold: float = _doc(
        "Share of drifted features at or above which the whole dataset drifted.", 0.3
    )
    retrain_cron: str = _doc(
        "Scheduled retraining as a 5-field cron line (UTC); empty means off.", ""
    )
    retrain_on_drift: bool = _doc(
        "Retrain when the dataset drifted in K of the last N drift checks.", True
    )
    retrain_drift_k: int = _doc("K of the drift rule.", 2)
    retrain_drift_n: int = _doc("N of the drift rule.", 3)
    retrain_accuracy_floor: float = _doc(
        "Retrain when live accuracy falls under this (0 turns the rule off).", 0.7
    )
    retrain_min_labels: int = _doc(
        "Labelled predictions the accuracy rule needs in its window.", 100
    )
    retrain_recent_rows: int = _doc(
        "Labelled predictions since a change that an automatic retrain waits for and "
        "learns from. They also make the new champion's reference profile, which its "
        "drift checks compare against: too few make a noisy one that reports drift.",
        500,
    )
    retrain_cooldown_minutes: int = _doc(
        "Least time between two automatic retraining jobs when the last one fixed "
        "what triggered it.",
        60,
    )
    retrain_retry_minutes: int = _doc(
        "When the last automatic retrain did not fix it (its challenger was rejected, "
        "it failed, or the new champion still breaks a rule), the next attempt comes "
        "after this, doubling per attempt up to the cooldown.",
        1,
    )
    rollout_mode: str = _doc(
        "How the retraining policy's challengers go out: `direct` (promoted on the "
        "holdout gate alone), or `shadow` / `canary` (after the gate, a rollout that "
        "judges them on live traffic first).",
        "direct",
    )
    rollout_share: float = _doc(
        "Share of requests a policy's canary answers (a shadow scores all of them).",
        0.2,
    )
    rollout_min_labels: int = _doc(
        "Labelled requests each arm needs before a rollout may be promoted.", 200
    )
    rollout_max_accuracy_drop: float = _doc(
        "Largest drop in accuracy (challenger against champion) a rollout accepts.",
        0.02,
    )
    rollout_max_error_increase: float = _doc(
        "A regressor's largest MAE increase a rollout accepts, as a share of the "
        "champion's (0.1: 10% worse).",
        0.1,
    )
    rollout_max_error_rate: float = _doc(
        "A challenger failing more than this share of its requests is aborted.", 0.02
    )
    rollout_max_p99_ratio: float = _doc(
        "A challenger whose p99 latency exceeds the champion's by this factor is "
        "aborted.",
        1.5,
    )
    rollout_max_duration_minutes: int = _doc(
        "A rollout still undecided after this long is aborted (the champion stays).",
        1440,
    )
    rollout_shadow_queue: int = _doc(
        "Requests waiting for shadow scoring per API process; beyond it shadow rows "
        "are dropped and counted, never the champion's answer delayed.",
        1000,
    )
    rollout_shadow_nice: int = _doc(
        "CPU niceness (0-19) of each API process's shadow scorer, a process of its "
        "own: at 10 the champion's requests get the cores first on a busy machine and "
        "the shadow takes what they leave (what it cannot, it drops and counts). "
        "PostgreSQL only: on SQLite it writes at normal priority (one write lock).",
        10,
    )
    alert_webhook_url: str = _doc(
        "Where alerts are also POSTed (JSON, HMAC-signed); empty means dashboard only.",
        "",
    )
    alert_webhook_secret: str = _doc(
        "Key of the HMAC-SHA256 signature in the X-ModelOps-Signature header.", ""
    )
    alert_webhook_attempts: int = _doc(
        "Delivery attempts per alert event, with exponential backoff between them.", 6
    )
    alert_rules: tuple[AlertRule, ...] = _doc(
        "What to alert on: `[[alert_rules]]` tables in modelops.toml (docs/alerts.md).",
        DEFAULT_ALERT_RULES,
    )
    flower_basic_auth: str = _doc(
        "user:password for Flower's basic auth; empty leaves it open (loopback only).",
        "",
    )
    flower_url: str = _doc(
        "Public URL of Flower for task links; empty means http://<flower_host>:<port>.",
        "",
    )

    def __post_init__(self) -> None:
        if not self.model_name:
            object.__setattr__(self, "model_name", self.default_model)
        self._resolve_paths()
        self._check()

    def for_model(self, name: str) -> Settings:
        """These settings as they apply to model `name`: its `[models.NAME]`
        overrides on top, and `model_name` set to it."""
        return replace(self, model_name=name, **self.models.get(name, {}))

    def _resolve_paths(self) -> None:
        """Make every path absolute once, here: `home` against the working directory,
        the other paths against `home`. A relative path left for later is resolved
        against whatever directory the reader happens to use (Flask's `send_file`
        takes the package's), so the same setting would name two files."""
        home = Path(self.home).expanduser().resolve()
        object.__setattr__(self, "home", str(home))
        for name, default in (("artifact_dir", "artifacts"), ("data_dir", "data")):
            value = getattr(self, name) or default
            if "://" not in value:  # an fsspec URL is left as it is
                value = str(home / Path(value).expanduser())
            object.__setattr__(self, name, value)
        database_url = self.database_url or "sqlite:///modelops.db"
        object.__setattr__(self, "database_url", _sqlite_under(home, database_url))

    def _check(self) -> None:
        for name in ("api_port", "flower_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{_env(name)} must be a port 0-65535, got {port}")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{_env(name)} must be at least 1")
        for name in _RETENTION_DAYS:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{_env(name)} must be more than 0 days")
        for name in ("rollout_shadow_nice", "prediction_log_nice"):
            if not 0 <= getattr(self, name) <= 19:
                raise ConfigError(f"{_env(name)} must be 0 to 19")
        if not 0 < self.broker_publish_timeout_seconds <= 30:
            raise ConfigError(
                f"{_env('broker_publish_timeout_seconds')} must be in (0, 30]"
            )
        for name in ("drift_psi_threshold", "drift_alpha", "drift_share_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{_env(name)} must be in (0, 1]")
        if self.retrain_drift_k > self.retrain_drift_n:
            raise ConfigError(f"{_env('retrain_drift_k')} must not exceed "
                              f"{_env('retrain_drift_n')}")  # fmt: skip
        if self.retrain_cron and len(self.retrain_cron.split()) != 5:
            raise ConfigError(f"{_env('retrain_cron')} must have 5 fields, e.g. "
                              "'30 2 * * *'")  # fmt: skip
        if not 0 <= self.gate_f1_tolerance < 1:
            raise ConfigError(f"{_env('gate_f1_tolerance')} must be in [0, 1)")
        if self.job_stall_seconds < 3 * self.job_heartbeat_seconds:
            raise ConfigError(
                f"{_env('job_stall_seconds')} must be at least 3 heartbeats "
                f"({_env('job_heartbeat_seconds')})"
            )
        if self.microbatch_wait_ms < 0:
            raise ConfigError(f"{_env('microbatch_wait_ms')} must not be negative")
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"{_env('test_size')} must be between 0 and 1")
        if self.profile_bins < 2:
            raise ConfigError(f"{_env('profile_bins')} must be at least 2")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"{_env('log_level')} must be one of {', '.join(LOG_LEVELS)}"
            )
        for name in ("default_model", "demo_model", "model_name"):
            if not MODEL_NAME_PATTERN.match(getattr(self, name)):
                raise ConfigError(_bad_model_name(_env(name), getattr(self, name)))
        if self.inference_runtime not in INFERENCE_RUNTIMES:
            raise ConfigError(f"{_env('inference_runtime')} must be one of "
                              f"{', '.join(INFERENCE_RUNTIMES)}")  # fmt: skip
        if self.rollout_mode not in ROLLOUT_MODES:
            raise ConfigError(f"{_env('rollout_mode')} must be one of "
                              f"{', '.join(ROLLOUT_MODES)}")  # fmt: skip
        for name in ("rollout_share", "rollout_max_accuracy_drop",
                     "rollout_max_error_rate"):  # fmt: skip
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{_env(name)} must be in (0, 1]")
        if not self.rollout_max_error_increase > 0:
            raise ConfigError(f"{_env('rollout_max_error_increase')} must be above 0")
        if not self.rollout_max_p99_ratio >= 1:
            raise ConfigError(f"{_env('rollout_max_p99_ratio')} must be at least 1")
        if self.demo not in DEMO_MODES:
            raise ConfigError(f"{_env('demo')} must be one of {', '.join(DEMO_MODES)}")
        if self.demo_model_type not in MODEL_TYPES:
            raise ConfigError(
                f"{_env('demo_model_type')} must be one of {', '.join(MODEL_TYPES)}"
            )
        self._check_artifact_store()

    def _check_artifact_store(self) -> None:
        """An artifact URL whose fsspec backend is missing fails at start-up, not at
        the first training job."""
        protocol, separator, _ = self.artifact_dir.partition("://")
        if not separator:
            return
        import fsspec  # only for a URL: a plain directory needs no fsspec at start-up

        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{_env('artifact_dir')}: {exc}") from exc

    @property
    def reads_need_key(self) -> bool:
        """Reads need the API key when asked to, or when the API can be reached from
        other machines: the data behind them is the user's."""
        return self.read_auth or not _is_loopback(self.api_host)

    @property
    def demo_on(self) -> bool:
        """Demo routes are served. `auto` reaches a process as `on` only through
        `modelops up`, which resolves it for its children."""
        return self.demo == "on"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def writer_niceness(self, niceness: int) -> int:
        """The niceness a helper process that writes to the database takes:
        `niceness` on PostgreSQL, none on SQLite. SQLite has one write lock for the
        whole file, and a low-priority process holding it on busy cores makes every
        other writer wait for it (priority inversion: in the contention case a job
        submission waited over 10 s behind a niced log process's transaction)."""
        return 0 if self.is_sqlite else niceness

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with `changes` applied and re-validated."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the TOML file (if any) under `MODELOPS_*` variables.

        Raises
        ------
        ConfigError
            For an unknown key, a value of the wrong type, or an unreadable file.
        """
        environ = os.environ if environ is None else environ
        env_values = {
            _field_name(key): (key, raw)
            for key, raw in environ.items()
            if key.startswith(ENV_PREFIX)
        }
        config_file = env_values.get("config_file", ("", cls.config_file))[1]
        values = _read_toml(Path(config_file))
        for name, (key, raw) in env_values.items():
            values[name] = _parse_env(key, name, raw)
        return cls(**values)


_POSITIVE = (
    "api_workers", "api_threads", "worker_concurrency", "worker_max_memory_mb",
    "min_class_rows",
    "predict_timeout_ms", "max_batch_instances", "max_request_bytes",
    "microbatch_max_rows", "model_poll_ms", "prediction_log_batch_size",
    "prediction_log_flush_ms", "prediction_log_spool_size",
    "retrain_time_limit_seconds", "default_time_limit_seconds",
    "jobs_page_size", "score_time_limit_seconds", "score_chunk_rows",
    "upload_max_bytes", "file_retention_hours", "job_heartbeat_seconds",
    "job_stall_seconds", "drift_min_rows", "metrics_window_minutes",
    "drift_check_seconds", "monitor_interval_seconds",
    "job_republish_seconds",
    "drift_window_rows",
    "retrain_drift_k", "retrain_drift_n", "retrain_min_labels", "retrain_retry_minutes",
    "retrain_recent_rows",
    "alert_webhook_attempts", "model_cache_mb", "register_timeout_seconds",
    "register_memory_mb", "prune_seconds", "prune_batch_rows", "rollout_min_labels",
    "rollout_max_duration_minutes", "rollout_shadow_queue",
)  # fmt: skip
# Fractions allowed: a soak test keeps minutes (0.01 days is about 14 minutes).
_RETENTION_DAYS = (
    "retrain_feedback_days", "prediction_retention_days", "rollup_retention_days",
    "drift_report_retention_days", "job_retention_days",
    "alert_retention_days",
)  # fmt: skip


TOML_ONLY = ("alert_rules", "models")  # tables: from modelops.toml only


def _bad_model_name(where: str, name: object) -> str:
    return (f"{where}: {name!r} is not a model name (a lower-case letter, then up "
            "to 62 lower-case letters, digits, '_' or '-')")  # fmt: skip


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _sqlite_under(home: Path, url: str) -> str:
    """A SQLite URL whose file path is relative, resolved against `home`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url  # another database, or SQLite in memory (sqlite://)
    path, separator, query = url.removeprefix(prefix).partition("?")
    if not path or path == ":memory:" or Path(path).is_absolute():
        return url
    return f"{prefix}{home / path}{separator}{query}"


def _env(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


@functools.cache
def _types() -> dict[str, type]:
    """Each setting's type, resolved once: resolving the annotations of a hundred
    fields per environment variable cost about a second at every process start."""
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


def _field_name(key: str) -> str:
    name = key.removeprefix(ENV_PREFIX).lower()
    if key in RENAMED:
        raise ConfigError(f"{key} is now {RENAMED[key]}", key=key)
    if name in RETIRED:
        raise ConfigError(f"{key} is retired ({RETIRED[name]}): remove it", key=key)
    if name not in _types() or name in _INTERNAL:
        raise ConfigError(f"unknown setting {key}", key=key)
    return name


def _parse_env(key: str, name: str, raw: str) -> Any:
    if name in TOML_ONLY:
        raise ConfigError(f"{key} cannot come from the environment; set {name} in "
                          "modelops.toml", key=key)  # fmt: skip
    kind = _types()[name]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{key} must be true or false, got {raw!r}", key=key)
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(
                f"{key} must be {'an integer' if kind is int else 'a number'}, "
                f"got {raw!r}",
                key=key,
            ) from None
    return raw


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", file=str(path)) from exc
    types = _types()
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in RETIRED:
            raise ConfigError(f"{name!r} in {path} is retired ({RETIRED[name]}): "
                              "remove it", file=str(path))  # fmt: skip
        if name not in types or name in _INTERNAL:
            raise ConfigError(f"unknown setting {name!r} in {path}", file=str(path))
        values[name] = _toml_value(path, name, value, types[name])
    return values


def _toml_value(path: Path, name: str, value: Any, kind: Any) -> Any:
    if name == "alert_rules":
        return parse_alert_rules(value, str(path))
    if name == "models":
        return _model_overrides(path, value)
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {name!r} in {path} must be a list of strings",
                              file=str(path))  # fmt: skip
        return tuple(value)
    return _check_toml_type(path, name, value, kind)


def _model_overrides(path: Path, tables: Any) -> Mapping[str, Mapping[str, Any]]:
    """`[models.NAME]` tables: known names, per-model keys only, each type checked."""
    if not isinstance(tables, dict):
        raise ConfigError(f"models in {path} must be tables [models.NAME]",
                          file=str(path))  # fmt: skip
    types = _types()
    overrides: dict[str, Mapping[str, Any]] = {}
    for model, table in tables.items():
        if not MODEL_NAME_PATTERN.match(model) or not isinstance(table, dict):
            raise ConfigError(_bad_model_name(f"[models.{model}] in {path}", model),
                              file=str(path))  # fmt: skip
        refused = sorted(set(table) - set(PER_MODEL))
        if refused:
            raise ConfigError(
                f"[models.{model}] in {path}: {', '.join(refused)} cannot be set per "
                f"model; these can: {', '.join(PER_MODEL)}",
                file=str(path),
            )
        overrides[model] = {
            key: _toml_value(path, key, value, types[key])
            for key, value in table.items()
        }
    return MappingProxyType(overrides)


def _check_toml_type(path: Path, name: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(
            f"setting {name!r} in {path} must be {kind.__name__}, "
            f"got {type(value).__name__}",
            file=str(path),
        )
    return value


def describe_settings() -> list[tuple[str, str, Any, str]]:
    """Return (env var, type, default, doc) for every setting, for the docs."""
    types = _types()
    return [
        (_env(f.name), _type_name(f.name, types[f.name]),
         f.default if f.default_factory is MISSING else f.default_factory(),
         f.metadata["doc"])
        for f in fields(Settings) if f.name not in _INTERNAL
    ]  # fmt: skip


def _type_name(name: str, kind: Any) -> str:
    if name in TOML_ONLY:
        return "table"
    if kind == tuple[str, ...]:
        return "list"
    return str(getattr(kind, "__name__", kind))


_INTERNAL = frozenset(f.name for f in fields(Settings) if f.metadata.get("internal"))


@functools.cache
def get_settings() -> Settings:
    """Settings of this process. Entrypoints only."""
    return Settings.from_env()
