"""Back to a clean demo state without restarting anything: predictions, labels,
metrics, drift reports, alerts, other jobs, versions and uploaded files are removed
and a fresh demo model becomes champion. The champion's generation keeps growing, so
every API process swaps to the new model by itself."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.data import synthetic
from common.data.datasets import load_dataset
from common.errors import InvalidInputError
from common.jobs import scoring
from common.jobs.progress import ProgressCallback
from common.models import registry
from common.models.artifacts import artifact_url, remove_artifact
from common.models.training import ModelTrainer
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    AlertDelivery,
    AuditEvent,
    Champion,
    ChampionHistory,
    DriftReport,
    FeedbackLabel,
    Job,
    MetricSnapshot,
    ModelVersion,
    PredictionLog,
    RetrainingState,
)

log = logging.getLogger(__name__)
CLEARED = (
    AlertDelivery,
    Alert,
    DriftReport,
    MetricSnapshot,
    FeedbackLabel,
    PredictionLog,
    ChampionHistory,
    RetrainingState,  # its decisions name jobs and alerts that are gone
)


def reset_demo(
    session_factory: sessionmaker[Session],
    settings: Settings,
    job: Job,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Train a fresh demo model, then clear the demo data and make it champion."""
    dataset = load_dataset(settings, settings.demo_dataset)
    result = ModelTrainer(settings).train_model(
        dataset.frame,
        dataset.target,
        settings.demo_model_type,
        dataset=dataset.name,
        progress=lambda pct, stage: progress(int(pct * 0.8), stage),
    )
    progress(85, "clearing demo data")
    with session_scope(session_factory) as session:
        old_files = [
            artifact_url(settings.artifact_dir, v.artifact_path)
            for v in registry.list_versions(session, settings)
        ]
        generation = _clear(session, settings, job.id)
        version = registry.register_model(
            session, settings, result, reason="demo reset"
        )
        version.state = "champion"
        session.add(
            Champion(
                name=settings.model_name,
                model_version_id=version.id,
                generation=generation + 1,
            )
        )
        session.add(
            ChampionHistory(
                name=settings.model_name,
                model_version_id=version.id,
                generation=generation + 1,
                reason="demo reset",
            )
        )
        repo.add_audit_event(
            session, "demo_reset", "job", job.id, generation=generation + 1
        )
    for url in old_files:
        remove_artifact(url)
    for folder in (scoring.UPLOADS, scoring.OUTPUTS):
        shutil.rmtree(Path(settings.data_dir) / folder, ignore_errors=True)
    progress(99, "done")
    return {
        "model_version": version.version,
        "generation": generation + 1,
        "message": f"demo reset: version {version.version} is champion",
    }


def _clear(session: Session, settings: Settings, keep_job: int) -> int:
    """Delete the demo data; return the champion generation it had."""
    champion = registry.find_champion(session, settings)
    generation = champion.generation if champion else 0
    for table in CLEARED:
        session.execute(delete(table))
    session.execute(delete(Champion))
    session.execute(delete(Job).where(Job.id != keep_job))
    session.execute(delete(ModelVersion))
    session.flush()
    return generation


def set_demo_scenario(session: Session, scenario: str, actor: str) -> str:
    """Ask demo traffic to switch to `scenario` (a synthetic scenario name).

    Raises
    ------
    InvalidInputError
        For an unknown scenario.
    """
    if scenario not in synthetic.SCENARIOS:
        raise InvalidInputError(
            f"unknown scenario {scenario!r}; "
            f"choose one of {', '.join(synthetic.SCENARIOS)}",
            field="scenario",
        )
    repo.add_audit_event(session, "demo_scenario", "demo", scenario, actor=actor)
    return scenario


def current_demo_scenario(session: Session) -> str:
    """The scenario demo traffic follows: the last one set since the last reset."""
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action.in_(("demo_scenario", "demo_reset")))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if event is None or event.action == "demo_reset":
        return "baseline"
    return event.subject_id
