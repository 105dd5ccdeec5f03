"""The model this API process serves, swapped when the champion generation changes.

A watcher thread polls the (cheap) generation; on a change it loads the new version in
the background, verifies its sha256, warms it, and swaps one reference. Requests read
that reference once, so a swap never fails or mixes a request.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import utcnow
from common.config import Settings
from common.data.processing import example_features
from common.errors import AppError, ArtifactError
from common.models import registry
from common.models.schemas import FeatureSpec
from common.models.validation import to_frame
from common.monitoring import alerts
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import Alert, ModelVersion

log = logging.getLogger(__name__)

# A refused champion is tried again every this many polls (10 s at the default
# 500 ms): cheap, and a restored artifact serves without another promotion.
RETRY_REFUSED_POLLS = 20


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed pipeline and what identifies it."""

    model_version_id: int
    version: int
    generation: int
    sha256: str
    pipeline: Any
    input_schema: list[FeatureSpec]
    classes: list[Any]
    loaded_at: datetime


class ModelCache:
    """Holds one `LoadedModel`; a failed load keeps the previous one serving."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        on_alert: Callable[[int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.on_alert = on_alert  # told (alert id, event) of each alert it changes
        self.current: LoadedModel | None = None
        self.last_error: str | None = "no model loaded yet"
        # (generation, version id) refused, and when: tried again after a while, so a
        # restored artifact is picked up without another promotion.
        self._failed: tuple[int, int] | None = None
        self._failed_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watcher thread (once per process, after any fork)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="model-watcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.model_poll_ms / 1000):
            self.refresh()

    def refresh(self) -> LoadedModel | None:
        """Load the champion if its generation differs from the one served."""
        with self._lock:
            target: tuple[ModelVersion, int] | None = None
            try:
                target = self._champion_if_changed()
                if target is None:
                    return self.current
                version, generation = target
                loaded = _load(self.settings, version, generation)
            except (AppError, SQLAlchemyError) as exc:
                self.last_error = str(exc)
                if target is not None:
                    self._failed = (target[1], target[0].id)
                    self._failed_at = time.monotonic()
                log.warning(
                    "model load failed; the current model keeps serving: %s", exc
                )
                if target is not None and isinstance(exc, ArtifactError):
                    self._alert_refused(target[0], exc)
                return self.current
            healed = self._failed is not None
            self.current, self.last_error, self._failed = loaded, None, None
            if healed:
                self._resolve_refused(loaded.version)
            # The model is long-lived: keep its many objects out of the cyclic GC's
            # scans, which otherwise show up as latency spikes under load. Unfreeze
            # and collect first, so a replaced model's cycles are still freed.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            log.info("serving version=%d generation=%d", loaded.version, generation)
            return loaded

    def _alert_refused(self, version: ModelVersion, exc: ArtifactError) -> None:
        """Open one alert for a champion whose artifact is refused (every API process
        that refuses it tries; the database keeps one open)."""
        serving = self.current.version if self.current else None
        self._change_alert("opened", lambda session: alerts.artifact_refused(
            session, version.version, exc.message, serving
        ))  # fmt: skip

    def _resolve_refused(self, version: int) -> None:
        """The version's artifact loads again (it was restored): close its alert."""
        self._change_alert(
            "resolved", lambda session: alerts.artifact_accepted(session, version)
        )

    def _change_alert(
        self, event: str, change: Callable[[Session], Alert | None]
    ) -> None:
        """Apply an alert change in its own transaction, then pass it on (webhook);
        a database error is logged, never raised into the model watcher."""
        try:
            with session_scope(self.session_factory) as session:
                alert = change(session)
                changed = alert.id if alert else None
        except SQLAlchemyError as error:
            log.error("could not record the artifact alert (%s): %s", event, error)
            return
        if changed is not None and self.on_alert is not None:
            self.on_alert(changed, event)

    def _champion_if_changed(self) -> tuple[ModelVersion, int] | None:
        with session_scope(self.session_factory) as session:
            pointer = repo.find_champion_generation(session, self.settings.model_name)
            if pointer is None:
                self.last_error = "no model has been promoted yet"
                return None
            generation, version_id = pointer
            if self.current is not None and self.current.generation == generation:
                return None
            if (
                self._failed == (generation, version_id)
                and time.monotonic() - self._failed_at
                < RETRY_REFUSED_POLLS * self.settings.model_poll_ms / 1000
            ):
                return None  # refused a moment ago; wait for a change or the retry
            version = session.get(ModelVersion, version_id)
            assert version is not None  # foreign key
            return version, generation


def _load(settings: Settings, version: ModelVersion, generation: int) -> LoadedModel:
    pipeline = registry.load_model(settings, version)
    schema = registry.input_schema(version)
    # One prediction before serving, so the first request pays no lazy set-up.
    example = example_features(schema)
    pipeline.predict_proba(to_frame(schema, [[example[s.name] for s in schema]]))
    return LoadedModel(
        model_version_id=version.id,
        version=version.version,
        generation=generation,
        sha256=version.sha256,
        pipeline=pipeline,
        input_schema=schema,
        classes=list(version.classes),
        loaded_at=utcnow(),
    )
