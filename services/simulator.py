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
) -> Tally:
    """Send about `rate` predictions a second for `duration` seconds; post each true
    label `label_delay` seconds after its prediction. Without a `scenario`, follow
    the demo scenario the API names (`POST /demo/drift` switches it)."""
    client = ApiClient(url, api_key)
    try:
        return _run(client, rate, scenario, duration, label_delay, seed, report)
    finally:
        client.close()


def _run(
    client: ApiClient,
    rate: float,
    scenario: str | None,
    duration: float,
    label_delay: float,
    seed: int,
    report: Callable[[Tally], None],
) -> Tally:
    tally = Tally()
    pending: collections.deque[tuple[float, str, Any]] = collections.deque()
    following = scenario is None
    current = scenario or _demo_scenario(client)
    rows = _rows(current, seed)
    started = time.monotonic()
    next_report, next_check = started + 5, started + FOLLOW_SECONDS
    while (now := time.monotonic()) - started < duration:
        if following and now >= next_check:
            wanted, next_check = _demo_scenario(client), now + FOLLOW_SECONDS
            if wanted != current:
                log.info("demo scenario %s -> %s", current, wanted)
                current, rows = wanted, _rows(wanted, seed + tally.sent)
        features, label = next(rows)
        tally.sent += 1
        try:
            status, body = client.post("/predict", {"features": features})
        except OSError:
            status, body = 0, None
        if status == 200:
            tally.answered += 1
            tally.versions[body["model_version"]] += 1
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
