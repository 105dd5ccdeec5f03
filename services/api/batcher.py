"""Cross-request micro-batching: concurrent rows of one process predicted together.

For scikit-learn, one thread takes whatever requests are queued and predicts them in
one call per model, so a forest pays its per-call cost once for many rows. Batches
form while the previous batch is being predicted; under load (the last batch was
shared) a batch also waits up to `microbatch_wait_ms` for more. A lone request is
never held back. A compiled model (ONNX Runtime) scores in the request's own thread
instead: its call costs microseconds and runs outside the GIL, so the two thread
hand-overs of a batch would cost more than batching saves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from common.errors import UnprocessableDataError
from common.models.prediction import Prediction, predictions_from
from services.api.model_cache import LoadedModel

log = logging.getLogger(__name__)


class UnscorableInputError(UnprocessableDataError):
    """Valid input that the model still failed on (logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__("the model could not score this input")


class Pending:
    """One request's rows on their way through a batch: the request thread waits on
    it, the batcher thread fills it. A bare lock, held until the answer is in, is the
    cheapest hand-over between two threads (a Future's condition, waited on and
    notified, was a tenth of an API process's GIL-holding samples at 4,000 req/s)."""

    __slots__ = ("_answer", "_done", "_error", "abandoned", "model", "rows")

    def __init__(self, model: LoadedModel, rows: list[list[Any]]) -> None:
        self.model = model
        self.rows = rows
        self._done = threading.Lock()
        self._done.acquire()
        self._answer: list[Prediction] = []
        self._error: BaseException | None = None
        self.abandoned = False  # its request stopped waiting: skip it

    def result(self, timeout: float) -> list[Prediction]:
        """The predictions, one per row.

        Raises
        ------
        TimeoutError
            Not in within `timeout` seconds (the rows are then skipped if their
            batch has not started).
        UnscorableInputError
            The model failed on these rows.
        """
        if not self._done.acquire(timeout=max(timeout, 0.0)):
            self.abandoned = True
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._answer

    def set_result(self, predictions: list[Prediction]) -> None:
        if self._done.locked():  # answered once only
            self._answer = predictions
            self._done.release()

    def set_exception(self, error: BaseException) -> None:
        if self._done.locked():
            self._error = error
            self._done.release()


class MicroBatcher:
    """Queues rows per request and predicts them in batches on one thread."""

    def __init__(self, max_rows: int, wait_ms: float) -> None:
        self.max_rows = max_rows
        self.wait_seconds = wait_ms / 1000
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self._last_batch_items = 0

    def predict(
        self, model: LoadedModel, rows: list[list[Any]], timeout: float
    ) -> list[Prediction]:
        """One `Prediction` per row of `rows`: compiled models score here, in the
        calling thread (in one benchmark run, 1.27x the requests of a logistic
        regression and 1.16x a forest's against their batches; docs/performance.md),
        scikit-learn's wait for a batch.

        Raises
        ------
        TimeoutError
            A batch did not answer within `timeout` seconds.
        UnscorableInputError
            The model failed on these rows.
        """
        if model.runtime != "onnx":
            return self.submit(model, rows).result(timeout)
        try:
            return predictions_from(model.scorer.score_rows(model.input_schema, rows))
        except Exception:
            log.exception("prediction failed rows=%d", len(rows))
            raise UnscorableInputError() from None

    def submit(self, model: LoadedModel, rows: list[list[Any]]) -> Pending:
        """Queue `rows` for `model`; the answer holds one `Prediction` per row."""
        if self._thread is None:
            self._start()
        item = Pending(model, rows)
        self._queue.put(item)
        return item

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

    def _collect(self, first: Pending) -> tuple[list[Pending], bool]:
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

    def _predict(self, batch: list[Pending]) -> None:
        groups: dict[int, list[Pending]] = {}
        for item in batch:  # a swap may put two models in one batch
            if not item.abandoned:
                groups.setdefault(id(item.model), []).append(item)
        for items in groups.values():
            try:
                self._predict_together(items)
            except Exception:
                if len(items) == 1:
                    log.exception("prediction failed rows=%d", len(items[0].rows))
                    items[0].set_exception(UnscorableInputError())
                    continue
                for item in items:  # one bad request must not fail the others
                    self._predict([item])

    def _predict_together(self, items: list[Pending]) -> None:
        model = items[0].model
        rows = [row for item in items for row in item.rows]
        predictions = predictions_from(
            model.scorer.score_rows(model.input_schema, rows)
        )
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for item in items:
            item.set_result(predictions[start : start + len(item.rows)])
            start += len(item.rows)
