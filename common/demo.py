"""Back to a clean demo state without restarting anything: the demo model's
predictions, labels, metrics, drift reports, alerts, jobs, versions and their files
are removed and a fresh demo model becomes its champion. Every other model, and
everything of theirs, is left as it is. The champion's generation keeps growing, so
every API process swaps to the new model by itself."""

from __future__ import annotations

import logging
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
    LabelRollup,
    ModelVersion,
    PredictionLog,
    PredictionRollup,
    RetrainingState,
    Rollout,
)

log = logging.getLogger(__name__)


def reset_demo(
    session_factory: sessionmaker[Session],
    settings: Settings,
    job: Job,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Train a fresh demo model, then clear the demo model's data and make the new
    version its champion."""
    settings = settings.for_model(settings.demo_model)
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
            artifact_url(settings.artifact_dir, path)
            for v in registry.list_versions(session, settings)
            for path in (v.artifact_path, v.onnx_path)
            if path
        ]
        generation, old_outputs = _clear(session, settings, job.id)
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
            session, "demo_reset", "job", job.id, generation=generation + 1,
            model=settings.model_name,
        )  # fmt: skip
    for url in old_files:
        remove_artifact(url)
    for path in old_outputs:
        Path(settings.data_dir, path).unlink(missing_ok=True)
    progress(99, "done")
    return {
        "model_version": version.version,
        "generation": generation + 1,
        "message": f"demo reset: version {version.version} is champion",
    }


def _clear(
    session: Session, settings: Settings, keep_job: int
) -> tuple[int, list[str]]:
    """Delete the demo model's data; return the champion generation it had and the
    files (uploads, outputs) of its removed jobs."""
    name = settings.model_name
    champion = registry.find_champion(session, settings)
    generation = champion.generation if champion else 0
    ids = select(PredictionLog.prediction_id).where(PredictionLog.model == name)
    alerts = select(Alert.id).where(Alert.model == name)
    jobs = session.scalars(
        select(Job).where(Job.model == name, Job.id != keep_job)
    ).all()
    files = [path for job in jobs for path in _job_files(job)]
    session.execute(delete(AlertDelivery).where(AlertDelivery.alert_id.in_(alerts)))
    session.execute(delete(FeedbackLabel).where(FeedbackLabel.prediction_id.in_(ids)))
    session.execute(delete(Alert).where(Alert.model == name))
    session.execute(delete(DriftReport).where(DriftReport.model == name))
    session.execute(delete(PredictionLog).where(PredictionLog.model == name))
    session.execute(delete(PredictionRollup).where(PredictionRollup.model == name))
    session.execute(delete(LabelRollup).where(LabelRollup.model == name))
    session.execute(delete(ChampionHistory).where(ChampionHistory.name == name))
    session.execute(delete(Champion).where(Champion.name == name))
    # the policy's last decision names jobs and alerts that are gone
    session.execute(delete(RetrainingState).where(RetrainingState.name == name))
    session.execute(delete(Job).where(Job.model == name, Job.id != keep_job))
    session.execute(delete(Rollout).where(Rollout.model == name))
    session.execute(delete(ModelVersion).where(ModelVersion.name == name))
    session.flush()
    return generation, files


def _job_files(job: Job) -> list[str]:
    """A removed job's files under the data directory: its upload and output."""
    files = []
    source = (job.params or {}).get("source")
    if isinstance(source, str) and source.startswith(f"{scoring.UPLOADS}/"):
        files.append(source)
    output = (job.result or {}).get("output")
    if isinstance(output, str) and output.startswith(f"{scoring.OUTPUTS}/"):
        files.append(output)
    return files


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
