"""Train-and-register flows shared by the CLI, `modelops up` and (later) the worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from common.config import Settings
from common.data.datasets import Dataset
from common.jobs.progress import ProgressCallback, ignore_progress
from common.models import registry
from common.models.training import ModelResult, ModelTrainer
from common.storage.tables import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedVersion:
    version: ModelVersion
    result: ModelResult
    promoted: bool


def train_version(
    session: Session,
    settings: Settings,
    dataset: Dataset,
    *,
    model_type: str,
    params: dict[str, Any] | None = None,
    reason: str,
    promote: bool | None = None,
    actor: str = "system",
    progress: ProgressCallback = ignore_progress,
) -> TrainedVersion:
    """Train on `dataset`, register the result, and promote it when asked.

    `promote=None` promotes only when there is no champion yet.
    """
    result = ModelTrainer(settings).train_model(
        dataset.frame,
        dataset.target,
        model_type,
        params,
        dataset=dataset.name,
        progress=lambda pct, stage: progress(int(pct * 0.9), stage),
    )
    progress(92, "registering")
    version = registry.register_model(
        session, settings, result, reason=reason, actor=actor
    )
    if promote is None:
        promote = registry.find_champion(session, settings) is None
    if promote:
        registry.promote_version(
            session, settings, version.version, reason=reason, actor=actor
        )
    progress(100, "done")
    return TrainedVersion(version=version, result=result, promoted=promote)


def registry_is_empty(session: Session, settings: Settings) -> bool:
    return not registry.list_versions(session, settings)
