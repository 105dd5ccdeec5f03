"""Prometheus exposition at `GET /metrics/prometheus`.

Request counts and latencies are counted in each API process and summed across
processes through prometheus_client's multiprocess mode (services/api/serve.py sets
its directory); the model, accuracy, drift, alert and job figures are read from the
database at scrape time, so every worker reports the same.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.models import catalog
from common.monitoring import metrics
from common.process_state import read_state
from common.storage.db import session_scope
from common.storage.tables import Alert, Champion, DriftReport, Job, ModelVersion
from services.api.context import request_globals, this_request

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUESTS = Counter(
    "modelops_http_requests",
    "HTTP requests answered, by route and model ('' for routes of no model)",
    ["endpoint", "method", "status", "model"],
)
LATENCY = Histogram(
    "modelops_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


# The prediction log's own accounting (services/api/prediction_log.py): rows written,
# rows waiting in the spool, rows dropped because the spool was full, failed writes.
LOG_WRITTEN = Counter(
    "modelops_prediction_log_written", "Prediction log rows written to the database"
)
LOG_DROPPED = Counter(
    "modelops_prediction_log_dropped",
    "Prediction log rows dropped: the spool was full while the database refused",
)
LOG_WRITE_FAILURES = Counter(
    "modelops_prediction_log_write_failures",
    "Batches of prediction log rows the database refused (kept and retried)",
)
LOG_PENDING = Gauge(
    "modelops_prediction_log_pending",
    "Prediction log rows not yet written (live API processes, their log processes)",
    multiprocess_mode="livesum",
)


# Shadow scoring during rollouts (services/api/shadow.py): rows a challenger scored
# after the champion answered, and rows dropped because the shadow queue was full.
SHADOW_SCORED = Counter(
    "modelops_shadow_scored", "Rows a shadow challenger scored", ["model"]
)
SHADOW_DROPPED = Counter(
    "modelops_shadow_dropped",
    "Rows not shadow-scored: the queue was full, or the shadow process was behind, "
    "dead or failed to load the challenger (the champion's answer never waits)",
    ["model"],
)


_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


@functools.cache
def route_label(rule: str) -> str:
    """The route as a person writes it: `/jobs/<job_id>`, without werkzeug's
    converters (`<int(max=2147483647):job_id>`)."""
    return _CONVERTER.sub(r"<\1>", rule)


def instrument(app: Flask) -> None:
    """Count and time every request by its route (not its raw path)."""

    @app.before_request
    def _start() -> None:
        # also the /predict latency's start
        request_globals().request_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        request, g = this_request(), request_globals()
        rule = request.url_rule
        endpoint = route_label(rule.rule) if rule else "unmatched"
        model = g.get("model_name") or (request.view_args or {}).get("name", "")
        REQUESTS.labels(
            endpoint, request.method, str(response.status_code), model
        ).inc()
        started = g.get("request_started")
        if started is not None:
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        return response


class StateCollector(Collector):
    """Figures from the database, the same whichever worker is scraped."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings, self.factory = settings, factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The database's figures, or `modelops_database_up 0` without them: a
        scrape during an outage still carries the request and spool metrics."""
        try:
            with session_scope(self.factory) as session:
                figures = [
                    *self._model(session),
                    *self._live(session),
                    *self._drift(session),
                    *self._counts(session),
                ]
        except SQLAlchemyError:
            figures = []
        up = GaugeMetricFamily(
            "modelops_database_up", "1 when the database answered this scrape"
        )
        up.add_metric([], 1 if figures else 0)
        yield up
        yield from figures

    def _model(self, session: Session) -> Iterator[GaugeMetricFamily]:
        labels = ["model"]
        version = GaugeMetricFamily(
            "modelops_model_version", "Serving champion version", labels=labels
        )
        generation = GaugeMetricFamily(
            "modelops_model_generation", "Champion pointer generation", labels=labels
        )
        rows = session.execute(
            select(Champion.name, ModelVersion.version, Champion.generation).join(
                ModelVersion, ModelVersion.id == Champion.model_version_id
            )
        ).all()
        for name, number, gen in rows:
            version.add_metric([name], number)
            generation.add_metric([name], gen)
        yield from (version, generation)

    def _live(self, session: Session) -> Iterator[GaugeMetricFamily]:
        labels = ["model"]
        families = {
            "accuracy": GaugeMetricFamily(
                "modelops_live_accuracy",
                "Accuracy of labelled predictions in the window", labels=labels,
            ),
            "mae": GaugeMetricFamily(
                "modelops_live_mae",
                "A regressor's mean absolute error on labelled predictions",
                labels=labels,
            ),
            "rmse": GaugeMetricFamily(
                "modelops_live_rmse",
                "A regressor's root mean squared error on labelled predictions",
                labels=labels,
            ),
            "label_coverage": GaugeMetricFamily(
                "modelops_label_coverage",
                "Share of answered predictions with a label", labels=labels,
            ),
        }  # fmt: skip
        for model in catalog.list_models(session):
            window = metrics.compute_window_metrics(
                session, model.name, task=model.task,
                minutes=self.settings.for_model(model.name).metrics_window_minutes,
            )  # fmt: skip
            for key, family in families.items():
                if window.get(key) is not None:
                    family.add_metric([model.name], window[key])
        yield from families.values()

    def _drift(self, session: Session) -> Iterator[GaugeMetricFamily]:
        share = GaugeMetricFamily(
            "modelops_drift_share", "Share of drifted features", labels=["model"]
        )
        psi = GaugeMetricFamily(
            "modelops_feature_psi", "PSI per feature, latest check",
            labels=["model", "feature"],
        )  # fmt: skip
        latest = (
            select(func.max(DriftReport.id))
            .group_by(DriftReport.model)
            .scalar_subquery()
        )
        reports = session.scalars(select(DriftReport).where(DriftReport.id.in_(latest)))
        for report in reports:
            if report.drift_share is None:
                continue
            share.add_metric([report.model], report.drift_share)
            for name, feature in report.report.get("features", {}).items():
                psi.add_metric([report.model, name], feature["psi"])
        yield from (share, psi)

    def _counts(self, session: Session) -> Iterator[GaugeMetricFamily]:
        alerts = GaugeMetricFamily(
            "modelops_open_alerts", "Open alerts by model and severity",
            labels=["model", "severity"],
        )  # fmt: skip
        open_counts = dict(
            ((model or "", severity), count)
            for model, severity, count in session.execute(
                select(Alert.model, Alert.severity, func.count())
                .where(Alert.state == "open").group_by(Alert.model, Alert.severity)
            ).all()
        )  # fmt: skip
        for name in catalog.model_names(session):
            for severity in ("warn", "critical"):
                alerts.add_metric(
                    [name, severity], open_counts.get((name, severity), 0)
                )
        yield alerts
        by_state = GaugeMetricFamily(
            "modelops_jobs", "Jobs by kind, state and model",
            labels=["kind", "state", "model"],
        )  # fmt: skip
        rows = session.execute(
            select(Job.kind, Job.state, Job.model, func.count())
            .group_by(Job.kind, Job.state, Job.model)
        ).all()  # fmt: skip
        for kind, state, model, count in rows:
            by_state.add_metric([kind, state, model or ""], count)
        yield by_state


class ProcessCollector(Collector):
    """Exits and restarts of the processes `modelops up` supervises."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        supervised = read_state(self.settings.home)
        if supervised is None:
            return
        labels = ["process"]
        restarts = CounterMetricFamily(
            "modelops_process_restarts",
            "Restarts of a supervised process",
            labels=labels,
        )
        exits = CounterMetricFamily(
            "modelops_process_exits", "Unexpected exits of a supervised process",
            labels=labels,
        )  # fmt: skip
        up = GaugeMetricFamily(
            "modelops_process_up", "1 while a supervised process runs", labels=labels
        )
        for name, process in supervised["processes"].items():
            restarts.add_metric([name], process["restarts"])
            exits.add_metric([name], process["exits"])
            up.add_metric([name], 1 if process["state"] == "running" else 0)
        yield from (restarts, exits, up)


def forget_dead_processes() -> None:
    """Drop the live gauges of API processes that are gone (a replaced process
    leaves its files behind; its counters stay, summed, as Prometheus expects)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render(settings: Settings, factory: sessionmaker[Session]) -> bytes:
    """The exposition text: request metrics of every worker, then the state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        base: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    state = CollectorRegistry()
    state.register(StateCollector(settings, factory))
    state.register(ProcessCollector(settings))
    return generate_latest(base) + generate_latest(state)
