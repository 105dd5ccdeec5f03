"""The model this API process serves, reloaded when the champion generation changes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common import registry
from common.clock import utcnow
from common.config import Settings
from common.data import coerce_features, example_features
from common.errors import AppError
from common.schemas import FeatureSpec
from common.storage.db import session_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed pipeline and what identifies it."""

    model_version_id: int
    version: int
    generation: int
    sha256: str
    pipeline: Any
    input_schema: list[FeatureSpec]
    loaded_at: datetime


class ModelCache:
    """Holds one `LoadedModel`; a failed load keeps the previous one serving."""

    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session]
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> LoadedModel | None:
        """Load the champion if its generation differs from the one loaded."""
        with self._lock:
            try:
                with session_scope(self.session_factory) as session:
                    champion = registry.find_champion(session, self.settings)
                    if champion is None:
                        self.last_error = "no model has been promoted yet"
                        return self.current
                    if self.current and self.current.generation == champion.generation:
                        return self.current
                    version = champion.model_version
                    generation = champion.generation
                pipeline = registry.load_model(self.settings, version)
                schema = registry.input_schema(version)
                _warm_up(pipeline, schema)
            except (AppError, SQLAlchemyError) as exc:
                self.last_error = str(exc)
                log.warning("model load failed, keeping the current one: %s", exc)
                return self.current
            self.current = LoadedModel(
                model_version_id=version.id,
                version=version.version,
                generation=generation,
                sha256=version.sha256,
                pipeline=pipeline,
                input_schema=schema,
                loaded_at=utcnow(),
            )
            self.last_error = None
            log.info("serving version=%d generation=%d", version.version, generation)
            return self.current


def _warm_up(pipeline: Any, schema: list[FeatureSpec]) -> None:
    """One prediction before serving, so the first request pays no lazy set-up."""
    row = coerce_features(pd.DataFrame([example_features(schema)]), schema)
    pipeline.predict_proba(row)
