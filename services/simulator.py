"""`modelops simulate`: demo traffic for a running API, with true labels that arrive
after a delay, from the synthetic generator (any drift scenario)."""

from __future__ import annotations

import collections
import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.data import synthetic

log = logging.getLogger(__name__)
BLOCK_ROWS = 1000
FEEDBACK_BATCH = 200
FOLLOW_SECONDS = 2.0


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    labels: int = 0
    versions: collections.Counter[int] = field(default_factory=collections.Counter)


class ApiClient:
    """One keep-alive connection to the API."""

    def __init__(self, url: str, api_key: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["X-API-Key"] = api_key
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def close(self) -> None:
        self.connection.close()

    def get(self, path: str) -> tuple[int, Any]:
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        for attempt in (1, 2):  # one reconnect: the server may close idle connections
            try:
                self.connection.request("POST", path, json.dumps(body), self.headers)
                response = self.connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port,
                                                             timeout=10)  # fmt: skip
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def simulate(
    url: str,
    *,
    rate: float,
    scenario: str | None,
    duration: float,
    label_delay: float,
    seed: int,
    api_key: str | None = None,
    report: Callable[[Tally], None] = lambda tally: None,
    model: str | None = None,
) -> Tally:
    """Send about `rate` predictions a second for `duration` seconds; post each true
    label `label_delay` seconds after its prediction. Without a `scenario`, follow
    the demo scenario the API names (`POST /demo/drift` switches it).

    With `model`, send to that model's own route: synthetic churn rows and their
    labels when it takes the synthetic data's features (a model trained on them),
    else rows drawn from its input schema (numbers within their ranges, its
    categories), with no labels to send."""
    client = ApiClient(url, api_key)
    try:
        if model is None:
            return _run(client, rate, scenario, duration, label_delay, seed, report)
        status, body = client.get(f"/models/{model}")
        if status != 200:
            raise SimulationError(f"model {model}: {body['error']['message']}")
        path = f"/models/{model}/predict"
        schema = body["input_schema"]
        synthetic_features = {*synthetic.NUMERIC, *synthetic.CATEGORIES}
        if {spec["name"] for spec in schema} == synthetic_features:
            return _run(client, rate, scenario, duration, label_delay, seed, report,
                        path)  # fmt: skip
        rows = _schema_rows(schema, seed)
        return _drive(client, path, rows, rate, duration, label_delay, report)
    finally:
        client.close()


class SimulationError(Exception):
    """The simulation cannot start (an unknown model)."""


def _schema_rows(schema: list[dict[str, Any]], seed: int) -> Any:
    """Rows of a model's input schema: uniform numbers within the range it was made
    for, its categories uniformly, no label."""
    rng = np.random.default_rng(seed)
    while True:
        row: dict[str, Any] = {}
        for spec in schema:
            if spec["type"] == "category":
                row[spec["name"]] = str(rng.choice(spec["categories"]))
            else:
                low, high = spec["min"] or 0.0, spec["max"] or 0.0
                row[spec["name"]] = round(float(rng.uniform(low, high)), 6)
        yield row, None


def _run(
    client: ApiClient,
    rate: float,
    scenario: str | None,
    duration: float,
    label_delay: float,
    seed: int,
    report: Callable[[Tally], None],
    path: str = "/predict",
) -> Tally:
    """Synthetic churn rows with their labels, following the demo scenario unless
    one is given."""
    return _drive(client, path, _following(client, scenario, seed), rate, duration,
                  label_delay, report)  # fmt: skip


def _following(client: ApiClient, scenario: str | None, seed: int) -> Any:
    """Synthetic rows of `scenario`, or of the demo's scenario, checked every
    FOLLOW_SECONDS while they are drawn."""
    current = scenario or _demo_scenario(client)
    source, sent, next_check = _rows(current, seed), 0, time.monotonic()
    while True:
        now = time.monotonic()
        if scenario is None and now >= next_check:
            wanted, next_check = _demo_scenario(client), now + FOLLOW_SECONDS
            if wanted != current:
                log.info("demo scenario %s -> %s", current, wanted)
                current, source = wanted, _rows(wanted, seed + sent)
        sent += 1
        yield next(source)


def _drive(
    client: ApiClient,
    path: str,
    rows: Any,
    rate: float,
    duration: float,
    label_delay: float,
    report: Callable[[Tally], None],
) -> Tally:
    """Post `rows` (features, label or None) to `path` at `rate`, each label after
    `label_delay`."""
    tally = Tally()
    pending: collections.deque[tuple[float, str, Any]] = collections.deque()
    started = time.monotonic()
    next_report = started + 5
    while (now := time.monotonic()) - started < duration:
        features, label = next(rows)
        tally.sent += 1
        try:
            status, body = client.post(path, {"features": features})
        except OSError:
            status, body = 0, None
        if status == 200:
            tally.answered += 1
            tally.versions[body["model_version"]] += 1
            if label is not None:
                pending.append((now + label_delay, body["prediction_id"], label))
        else:
            tally.failed += 1
        _send_due_labels(client, pending, tally, now)
        if now >= next_report:
            report(tally)
            next_report = now + 5
        time.sleep(max(0.0, started + tally.sent / rate - time.monotonic()))
    _send_due_labels(client, pending, tally, time.monotonic())
    report(tally)
    return tally


def _demo_scenario(client: ApiClient) -> str:
    try:
        status, body = client.get("/demo/scenario")
    except (OSError, http.client.HTTPException):
        return "baseline"
    return str(body["scenario"]) if status == 200 else "baseline"


def _rows(scenario: str, seed: int) -> Any:
    block = 0
    while True:
        frame = synthetic.generate(scenario, BLOCK_ROWS, seed + block)
        for record in frame.to_dict(orient="records"):
            label = int(record.pop(synthetic.TARGET))
            yield {k: (None if v != v else v) for k, v in record.items()}, label
        block += 1


def _send_due_labels(
    client: ApiClient,
    pending: collections.deque[tuple[float, str, Any]],
    tally: Tally,
    now: float,
) -> None:
    due: list[dict[str, Any]] = []
    while pending and pending[0][0] <= now and len(due) < FEEDBACK_BATCH:
        _, prediction_id, label = pending.popleft()
        due.append({"prediction_id": prediction_id, "label": label})
    if due:
        status, _ = client.post("/feedback", due)
        if status == 200:
            tally.labels += len(due)
