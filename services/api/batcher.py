"""Cross-request micro-batching: concurrent rows of one process predicted together.

One thread takes whatever requests are queued and predicts them in one call per
model, so a forest pays its per-call cost once for many rows. Batches form while the
previous batch is being predicted; under load (the last batch was shared) a batch
also waits up to `microbatch_wait_ms` for more. A lone request is never held back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from common.errors import UnprocessableDataError
from common.models.prediction import Prediction, predictions_from
from services.api.model_cache import LoadedModel

log = logging.getLogger(__name__)


class UnscorableInputError(UnprocessableDataError):
    """Valid input that the model still failed on (logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__("the model could not score this input")


@dataclass
class _Item:
    model: LoadedModel
    rows: list[list[Any]]
    future: Future[list[Prediction]] = field(default_factory=Future)


class MicroBatcher:
    """Queues rows per request and predicts them in batches on one thread."""

    def __init__(self, max_rows: int, wait_ms: float) -> None:
        self.max_rows = max_rows
        self.wait_seconds = wait_ms / 1000
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self._last_batch_items = 0

    def submit(
        self, model: LoadedModel, rows: list[list[Any]]
    ) -> Future[list[Prediction]]:
        """Queue `rows` for `model`; the future holds one `Prediction` per row."""
        if self._thread is None:
            self._start()
        item = _Item(model, rows)
        self._queue.put(item)
        return item.future

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="micro-batcher", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._predict(batch)
            if stop:
                return

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, size = [first], len(first.rows)
        # Wait for company only under load (the last batch was shared): a lone
        # request is never held back.
        wait = self.wait_seconds if self._last_batch_items > 1 else 0.0
        deadline = time.monotonic() + wait
        while size < self.max_rows:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.rows)
        self._last_batch_items = len(batch)
        return batch, False

    def _predict(self, batch: list[_Item]) -> None:
        groups: dict[int, list[_Item]] = {}
        for item in batch:  # a swap may put two models in one batch
            if item.future.running() or item.future.set_running_or_notify_cancel():
                groups.setdefault(id(item.model), []).append(item)
        for items in groups.values():
            try:
                self._predict_together(items)
            except Exception:
                if len(items) == 1:
                    log.exception("prediction failed rows=%d", len(items[0].rows))
                    items[0].future.set_exception(UnscorableInputError())
                    continue
                for item in items:  # one bad request must not fail the others
                    self._predict([item])

    def _predict_together(self, items: list[_Item]) -> None:
        model = items[0].model
        rows = [row for item in items for row in item.rows]
        predictions = predictions_from(
            model.scorer.score_rows(model.input_schema, rows)
        )
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for item in items:
            item.future.set_result(predictions[start : start + len(item.rows)])
            start += len(item.rows)
