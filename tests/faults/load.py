"""Prediction traffic from client threads, every answer kept for the checks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any

from tests.e2e.conftest import ROW, http


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    version: str
    prediction_id: str | None


@dataclass
class PredictLoad:
    """`clients` threads posting `/predict` back to back until `stop()`."""

    url: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> PredictLoad:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, index: int) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            features = {**ROW, "age": 18 + (index * 7 + count) % 70}
            started = time.monotonic()
            try:
                status, headers, body = http(
                    "POST", f"{self.url}/predict", {"features": features}, timeout=30
                )
            except (OSError, HTTPException):  # refused, or cut off mid-answer
                status, headers, body = 0, {}, None
                self._stop.wait(0.05)  # a client backs off before it retries
            self.answers.append(
                Answer(started, time.monotonic(), status,
                       headers.get("X-Model-Version", ""),
                       body.get("prediction_id") if isinstance(body, dict) else None)
            )  # fmt: skip

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]
