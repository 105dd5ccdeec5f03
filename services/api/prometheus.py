"""Prometheus exposition at `GET /metrics/prometheus`.

Request counts and latencies are counted in each gunicorn worker and summed across
workers through prometheus_client's multiprocess mode (gunicorn.conf.py sets its
directory); the model, accuracy, drift, alert and job figures are read from the
database at scrape time, so every worker reports the same.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
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
from common.models import registry
from common.monitoring import metrics
from common.process_state import read_state
from common.storage.db import session_scope
from common.storage.tables import Alert, DriftReport, Job

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUESTS = Counter(
    "modelops_http_requests", "HTTP requests answered", ["endpoint", "method", "status"]
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
    "Prediction log rows waiting in the spools of live API processes",
    multiprocess_mode="livesum",
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
        g.request_started = time.perf_counter()  # also the /predict latency's start

    @app.after_request
    def _count(response: Response) -> Response:
        endpoint = (
            route_label(request.url_rule.rule) if request.url_rule else "unmatched"
        )
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
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
        champion = registry.find_champion(session, self.settings)
        if champion is not None:
            yield GaugeMetricFamily(
                "modelops_model_version",
                "Serving champion version",
                value=champion.model_version.version,
            )
            yield GaugeMetricFamily(
                "modelops_model_generation",
                "Champion pointer generation",
                value=champion.generation,
            )

    def _live(self, session: Session) -> Iterator[GaugeMetricFamily]:
        window = metrics.compute_window_metrics(
            session, minutes=self.settings.metrics_window_minutes
        )
        if window["accuracy"] is not None:
            yield GaugeMetricFamily(
                "modelops_live_accuracy",
                "Accuracy of labelled predictions in the window",
                value=window["accuracy"],
            )
        yield GaugeMetricFamily(
            "modelops_label_coverage",
            "Share of answered predictions with a label",
            value=window["label_coverage"],
        )

    def _drift(self, session: Session) -> Iterator[GaugeMetricFamily]:
        report = session.scalar(
            select(DriftReport).order_by(DriftReport.id.desc()).limit(1)
        )
        if report is None or report.drift_share is None:
            return
        yield GaugeMetricFamily(
            "modelops_drift_share",
            "Share of drifted features",
            value=report.drift_share,
        )
        psi = GaugeMetricFamily(
            "modelops_feature_psi", "PSI per feature, latest check", labels=["feature"]
        )
        for name, feature in report.report.get("features", {}).items():
            psi.add_metric([name], feature["psi"])
        yield psi

    def _counts(self, session: Session) -> Iterator[GaugeMetricFamily]:
        alerts = GaugeMetricFamily(
            "modelops_open_alerts", "Open alerts by severity", labels=["severity"]
        )
        for severity in ("warn", "critical"):
            count = (
                session.scalar(
                    select(func.count())
                    .select_from(Alert)
                    .where(Alert.state == "open", Alert.severity == severity)
                )
                or 0
            )
            alerts.add_metric([severity], count)
        yield alerts
        by_state = GaugeMetricFamily(
            "modelops_jobs", "Jobs by kind and state", labels=["kind", "state"]
        )
        rows = session.execute(
            select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
        ).all()
        for kind, state, count in rows:
            by_state.add_metric([kind, state], count)
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
