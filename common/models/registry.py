"""The model registry: versions with their artifacts, and the champion pointer.

Every change of champion bumps `generation` (API processes watch it to hot-swap) and
writes an audit row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import utcnow
from common.config import Settings
from common.errors import (
    ArtifactError,
    ConflictError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from common.models import catalog
from common.models.artifacts import (
    StoredArtifact,
    artifact_url,
    read_artifact,
    remove_artifact,
    verified_bytes,
    write_artifact,
    write_artifact_bytes,
)
from common.models.schemas import FeatureSpec
from common.models.training import ModelResult
from common.storage import repositories as repo
from common.storage.tables import Champion, ChampionHistory, ModelVersion

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
REGISTER_ATTEMPTS = 5


def register_model(
    session: Session,
    settings: Settings,
    result: ModelResult,
    *,
    reason: str,
    job_id: int | None = None,
    actor: str = "system",
) -> ModelVersion:
    """Write the artifact atomically and record a new candidate version.

    Registration is keyed by `job_id`: a job that registered before gets its version
    back instead of a second one. If recording fails the artifact file is removed, so
    nothing half-written is left registered.
    """
    name = settings.model_name
    if job_id is not None and (
        existing := repo.find_model_version_by_job(session, job_id)
    ):
        return existing
    catalog.ensure_model(session, name, result.task, source=result.source)
    bundle = {
        "format": ARTIFACT_FORMAT,
        "pipeline": result.pipeline,
        "feature_names": result.feature_names,
        "classes": result.classes,
        "model_type": result.model_type,
        "task": result.task,
    }
    row = _version_row(result)
    row.reason, row.job_id = reason, job_id
    return _store(session, settings, lambda url: write_artifact(bundle, url), row,
                  actor=actor)  # fmt: skip


def register_bundle(
    session: Session,
    settings: Settings,
    bundle: bytes,
    row: ModelVersion,
    *,
    reason: str,
    actor: str = "system",
) -> ModelVersion:
    """Record a new candidate version of `settings.model_name` from a bundle already
    dumped (a registered file, checked in its own process), described by `row`."""
    row.reason = reason
    return _store(session, settings, lambda url: write_artifact_bytes(bundle, url),
                  row, actor=actor)  # fmt: skip


def _store(
    session: Session,
    settings: Settings,
    write: Callable[[str], StoredArtifact],
    row: ModelVersion,
    *,
    actor: str,
) -> ModelVersion:
    """Write the artifact under the next version number and add `row` for it; a
    writer that loses the race for the number removes its own file and tries the
    next one."""
    name = settings.model_name
    for _attempt in range(REGISTER_ATTEMPTS):
        version = repo.next_version_number(session, name)
        relative = (
            # A unique name per write: a writer that loses the race for this version
            # number removes its own file, never the winner's.
            f"{name}/{version}/model-{uuid.uuid4().hex[:12]}.joblib"
        )
        stored = write(artifact_url(settings.artifact_dir, relative))
        row.name, row.version, row.state = name, version, "candidate"
        row.artifact_path, row.sha256 = relative, stored.sha256
        row.size_bytes = stored.size_bytes
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            remove_artifact(stored.url)
            if repo.find_model_version(session, name, version) is None:
                raise  # not a lost race for the version number: a real violation
            continue  # another process took this version number
        except BaseException:
            remove_artifact(stored.url)
            raise
        repo.add_audit_event(
            session,
            "register",
            "model_version",
            version,
            actor=actor,
            model=name,
            reason=row.reason,
            sha256=stored.sha256,
            job_id=row.job_id,
        )
        log.info(
            "registered model=%s version=%d sha256=%s", name, version, stored.sha256
        )
        return row
    raise ConflictError(f"could not allocate a version number for {name!r}; retry")


def _version_row(result: ModelResult) -> ModelVersion:
    return ModelVersion(
        model_type=result.model_type,
        target=result.target,
        feature_names=result.feature_names,
        classes=result.classes,
        input_schema=[spec.to_dict() for spec in result.input_schema],
        reference_profile=result.reference_profile,
        metrics={**result.metrics.to_dict(), "holdout_size": result.holdout_size},
        # Classification scores; a regressor's are in `metrics` (these stay 0).
        accuracy=getattr(result.metrics, "accuracy", 0.0),
        f1_score=getattr(result.metrics, "f1_score", 0.0),
        training_data_size=result.training_data_size,
        params=result.params,
        data_fingerprint=result.data_fingerprint,
        dataset=result.dataset,
        task=result.task,
        provenance=result.provenance,
    )


def load_model(settings: Settings, version: ModelVersion) -> Any:
    """Return the fitted pipeline of `version`, verified against its sha256.

    Raises
    ------
    ArtifactError
        When the file is missing, truncated or does not match its digest.
    """
    url = artifact_url(settings.artifact_dir, version.artifact_path)
    bundle = read_artifact(url, version.sha256, version.size_bytes)
    return bundle["pipeline"]


def input_schema(version: ModelVersion) -> list[FeatureSpec]:
    return [FeatureSpec.from_dict(item) for item in version.input_schema]


def champion_schemas(session: Session) -> list[tuple[str, list[FeatureSpec]]]:
    """Each model with a champion, and its champion's input schema, by name."""
    rows = session.execute(
        select(Champion.name, ModelVersion.input_schema)
        .join(ModelVersion, ModelVersion.id == Champion.model_version_id)
        .order_by(Champion.name)
    ).all()  # fmt: skip
    return [(name, [FeatureSpec.from_dict(i) for i in schema]) for name, schema in rows]


def list_versions(session: Session, settings: Settings) -> Sequence[ModelVersion]:
    """Every version of the served model, newest first."""
    return repo.list_model_versions(session, settings.model_name)


def get_version(session: Session, settings: Settings, version: int) -> ModelVersion:
    """Raises `ModelNotFoundError` for an unknown version."""
    row = repo.find_model_version(session, settings.model_name, version)
    if row is None:
        raise ModelNotFoundError(
            f"model {settings.model_name!r} has no version {version}",
            model=settings.model_name, version=version,
        )  # fmt: skip
    return row


def find_champion(session: Session, settings: Settings) -> Champion | None:
    return repo.find_champion(session, settings.model_name)


def get_champion(session: Session, settings: Settings) -> Champion:
    """Raises `ModelNotReadyError` when no version has been promoted yet."""
    champion = find_champion(session, settings)
    if champion is None:
        raise ModelNotReadyError(
            f"model {settings.model_name!r} has no champion yet; train or register "
            "a version and promote it",
            model=settings.model_name,
        )
    return champion


def promote_version(
    session: Session,
    settings: Settings,
    version: int,
    *,
    reason: str,
    actor: str = "system",
) -> Champion:
    """Make `version` the champion; the previous one becomes retired.

    Raises
    ------
    ModelNotFoundError
        Unknown version.
    ConflictError
        The version is already champion.
    ArtifactError
        The version's artifact is missing or damaged (409).
    """
    row = get_version(session, settings, version)
    champion = repo.find_champion(session, settings.model_name, for_update=True)
    if champion is not None and champion.model_version_id == row.id:
        raise ConflictError(
            f"version {version} is already the champion", version=version
        )
    champion = _point_to(session, settings, champion, row)
    session.add(
        ChampionHistory(
            name=settings.model_name,
            model_version_id=row.id,
            generation=champion.generation,
            reason=reason,
        )
    )
    repo.add_audit_event(
        session,
        "promote",
        "model_version",
        version,
        actor=actor,
        model=settings.model_name,
        reason=reason,
        generation=champion.generation,
    )
    log.info("promoted model=%s version=%d generation=%d", settings.model_name,
             version, champion.generation)  # fmt: skip
    return champion


def rollback(
    session: Session, settings: Settings, *, reason: str, actor: str = "system"
) -> Champion:
    """Pop the current champion and serve the one promoted before it.

    Raises
    ------
    ConflictError
        When there is no earlier champion to go back to.
    """
    stack = repo.champion_stack(session, settings.model_name)
    if len(stack) < 2:
        raise ConflictError(
            f"model {settings.model_name!r} has no previous champion to roll back to",
            model=settings.model_name,
        )
    current, previous = stack[0], stack[1]
    current.popped_at = utcnow()
    target = session.get(ModelVersion, previous.model_version_id)
    assert target is not None  # foreign key
    champion = repo.find_champion(session, settings.model_name, for_update=True)
    champion = _point_to(session, settings, champion, target)
    repo.add_audit_event(
        session,
        "rollback",
        "model_version",
        target.version,
        actor=actor,
        model=settings.model_name,
        reason=reason,
        generation=champion.generation,
    )
    log.info(
        "rolled back to version=%d generation=%d", target.version, champion.generation
    )
    return champion


def verify_artifact(settings: Settings, version: ModelVersion) -> None:
    """Check the version's artifact bytes against its size and sha256 (no unpickling).

    Raises
    ------
    ArtifactError
        When the artifact is missing or damaged.
    """
    url = artifact_url(settings.artifact_dir, version.artifact_path)
    try:
        verified_bytes(url, version.sha256, version.size_bytes)
    except ArtifactError as exc:
        raise ArtifactError(
            f"version {version.version} cannot serve: {exc.message}",
            version=version.version, path=url,
        ) from exc  # fmt: skip


def _point_to(
    session: Session, settings: Settings, champion: Champion | None, row: ModelVersion
) -> Champion:
    # A damaged artifact never becomes champion: every API process would refuse it.
    verify_artifact(settings, row)
    if champion is None:
        champion = Champion(
            name=settings.model_name, model_version_id=row.id, generation=1
        )
        session.add(champion)
    else:
        old = session.get(ModelVersion, champion.model_version_id)
        if old is not None:
            old.state = "retired"
        champion.model_version_id = row.id
        champion.generation = Champion.generation + 1  # atomic in SQL
        champion.updated_at = utcnow()
    row.state = "champion"
    session.flush()
    session.refresh(champion)
    return champion
