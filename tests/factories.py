"""Plain functions that build real rows and results, with overrides."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from common.config import Settings
from common.models import registry
from common.models.training import ModelResult, ModelTrainer
from common.storage.tables import Job, ModelVersion


def train_result(
    settings: Settings, frame: pd.DataFrame, target: str, **overrides: Any
) -> ModelResult:
    options = {"model_type": "logistic_regression", **overrides}
    return ModelTrainer(settings).train_model(frame, target, **options)


def register_version(
    session: Session,
    settings: Settings,
    frame: pd.DataFrame,
    target: str,
    **overrides: Any,
) -> ModelVersion:
    result = train_result(settings, frame, target, **overrides)
    version = registry.register_model(session, settings, result, reason="test")
    session.flush()
    return version


def make_job(session: Session, **overrides: Any) -> Job:
    job = Job(**{"kind": "retrain", "params": {}, **overrides})
    session.add(job)
    session.flush()
    return job
