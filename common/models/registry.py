"""The model registry: versions with their artifacts, and the champion pointer.

Every change of champion bumps `generation` (API processes watch it to hot-swap) and
writes an audit row.
"""

from __future__ import annotations

import logging
import os
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
from common.models.compilation import SAMPLE_ROWS, Compilation, compile_pipeline
from common.models.profile import sample_rows
from common.models.runtime import OnnxScorer, Scorer, SklearnScorer, serving_runtime
from common.models.schemas import FeatureSpec
from common.models.training import ModelResult
from common.storage import repositories as repo
from common.storage.tables import Champion, ChampionHistory, ModelVersion

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
COMPILATION_COLUMNS = ("runtime", "runtime_reason", "compile_check", "onnx_path",
                       "onnx_sha256", "onnx_size_bytes")  # fmt: skip
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
    # Compiled before the first write: compiling takes seconds, and a transaction
    # that has written holds its locks until it commits (on PostgreSQL, a new
    # model's row; on SQLite the whole file, where the write is not already
    # committed).
    compiled = compile_pipeline(
        result.pipeline, result.input_schema, result.holdout_X, task=result.task,
        classes=result.classes, random_state=settings.random_state,
    )  # fmt: skip
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
                  actor=actor, compiled=compiled)  # fmt: skip


def register_bundle(
    session: Session,
    settings: Settings,
    bundle: bytes,
    row: ModelVersion,
    *,
    reason: str,
    actor: str = "system",
    compiled: Compilation | None = None,
) -> ModelVersion:
    """Record a new candidate version of `settings.model_name` from a bundle already
    dumped (a registered file, checked in its own process, which also compiled it),
    described by `row`."""
    row.reason = reason
    return _store(session, settings, lambda url: write_artifact_bytes(bundle, url),
                  row, actor=actor, compiled=compiled)  # fmt: skip


def _store(
    session: Session,
    settings: Settings,
    write: Callable[[str], StoredArtifact],
    row: ModelVersion,
    *,
    actor: str,
    compiled: Compilation | None,
) -> ModelVersion:
    """Write the artifacts (the pipeline, and its ONNX model where it compiled
    exactly) under the next version number and add `row` for them; a writer that
    loses the race for the number removes its own files and tries the next one."""
    name = settings.model_name
    for _attempt in range(REGISTER_ATTEMPTS):
        version = repo.next_version_number(session, name)
        # A unique name per write: a writer that loses the race for this version
        # number removes its own files, never the winner's.
        stem = f"{name}/{version}/model-{uuid.uuid4().hex[:12]}"
        relative = f"{stem}.joblib"
        stored = write(artifact_url(settings.artifact_dir, relative))
        written = [stored.url]
        row.name, row.version, row.state = name, version, "candidate"
        row.artifact_path, row.sha256 = relative, stored.sha256
        row.size_bytes = stored.size_bytes
        try:
            if compiled is not None:
                written += _record_compilation(settings, row, compiled, stem)
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            _remove_all(written)
            if repo.find_model_version(session, name, version) is None:
                raise  # not a lost race for the version number: a real violation
            continue  # another process took this version number
        except BaseException:
            _remove_all(written)
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


def _record_compilation(
    settings: Settings, row: ModelVersion, compiled: Compilation, stem: str
) -> list[str]:
    """Put the compilation's outcome on `row` and store its ONNX model, if any,
    beside the pipeline; the URLs written."""
    row.runtime, row.runtime_reason = compiled.runtime, compiled.reason
    row.compile_check = compiled.check or None
    if compiled.onnx is None:
        return []
    relative = f"{stem}.onnx"
    stored = write_artifact_bytes(
        compiled.onnx, artifact_url(settings.artifact_dir, relative)
    )
    row.onnx_path, row.onnx_sha256 = relative, stored.sha256
    row.onnx_size_bytes = stored.size_bytes
    return [stored.url]


def _remove_all(urls: list[str]) -> None:
    for url in urls:
        remove_artifact(url)


def compile_version(
    session: Session, settings: Settings, version: ModelVersion, pipeline: Any
) -> ModelVersion:
    """Compile a version registered before compilation existed (its runtime is
    None), checked on rows drawn from its reference profile, and record the outcome
    (on `version` too). Two processes doing it at once: the first record stays.
    """
    schema = input_schema(version)
    reference = sample_rows(version.reference_profile, version.feature_names,
                            SAMPLE_ROWS, settings.random_state)  # fmt: skip
    compiled = compile_pipeline(pipeline, schema, reference, task=version.task,
                                classes=list(version.classes),
                                random_state=settings.random_state)  # fmt: skip
    row = session.get(ModelVersion, version.id, with_for_update=True)
    if row is None:
        return version
    if row.runtime is None:  # else another process compiled it meanwhile
        stem = f"{row.name}/{row.version}/model-{uuid.uuid4().hex[:12]}"
        written = _record_compilation(settings, row, compiled, stem)
        try:
            session.flush()
        except BaseException:
            _remove_all(written)
            raise
        log.info("compiled model=%s version=%d: %s", row.name, row.version,
                 compiled.reason or "ONNX matches scikit-learn")  # fmt: skip
    if row is not version:  # a detached copy (an API process's): bring it up to date
        for column in COMPILATION_COLUMNS:
            setattr(version, column, getattr(row, column))
    return version


def load_scorer(
    settings: Settings,
    version: ModelVersion,
    *,
    threads: int = 1,
    pipeline: Any = None,
) -> Scorer:
    """What scores `version`'s rows under `settings.inference_runtime`: its ONNX
    model in ONNX Runtime (sha256 verified first) or its scikit-learn pipeline.
    `pipeline`, where the caller has loaded it already, is not read again.

    Raises
    ------
    ArtifactError
        An artifact is missing or damaged, or the setting is `onnx` and the version
        did not compile exactly.
    """
    chosen, reason = serving_runtime(
        settings.inference_runtime, version.runtime, version.runtime_reason,
        version.version,
    )  # fmt: skip
    if chosen == "onnx" and version.onnx_path and version.onnx_sha256:
        missing = (version.compile_check or {}).get("missing_numbers", "onnx")
        if pipeline is None and missing == "sklearn":
            pipeline = load_model(settings, version)  # the fallback: verified here
        elif pipeline is None:
            # The pipeline stays the version's source of truth (retraining, gates,
            # fallback): a damaged one is refused even while ONNX would serve.
            verified_bytes(artifact_url(settings.artifact_dir, version.artifact_path),
                           version.sha256, version.size_bytes)  # fmt: skip
        url = artifact_url(settings.artifact_dir, version.onnx_path)
        data = verified_bytes(url, version.onnx_sha256, version.onnx_size_bytes)
        fallback = pipeline if missing == "sklearn" else None
        return OnnxScorer(data, input_schema(version), task=version.task,
                          classes=list(version.classes), threads=threads,
                          missing_numbers=missing, fallback=fallback)  # fmt: skip
    if pipeline is None:
        pipeline = load_model(settings, version)
    return SklearnScorer(pipeline, reason=reason or "no compiled model")


def batch_scorers(
    settings: Settings, version: ModelVersion, only: str | None = None
) -> list[Scorer]:
    """Each runtime `version` may score a batch with under the setting (the batch
    path times them and keeps the faster): ONNX Runtime on every core, and the
    scikit-learn pipeline unless the setting is `onnx`. The pipeline is read once.
    With `only` (the runtime an earlier job measured faster), that one alone, where
    the setting still allows it."""
    wants_onnx = settings.inference_runtime != "sklearn" and version.runtime == "onnx"
    wants_sklearn = settings.inference_runtime != "onnx"
    if only is not None and (wants_onnx if only == "onnx" else wants_sklearn):
        wants_onnx, wants_sklearn = only == "onnx", only != "onnx"
    pipeline = None
    if wants_sklearn:
        pipeline = on_every_core(load_model(settings, version))
    scorers: list[Scorer] = []
    if wants_onnx:
        scorers.append(load_scorer(settings, version, threads=os.cpu_count() or 1,
                                   pipeline=pipeline))  # fmt: skip
    elif settings.inference_runtime == "onnx":
        load_scorer(settings, version)  # raises: the setting refuses scikit-learn
    if pipeline is not None:
        scorers.append(SklearnScorer(pipeline))
    return scorers


def on_every_core(pipeline: Any) -> Any:
    """`pipeline` with its ensembles (forests: one thread per core over their
    trees) set to predict on every core: a batch job has the worker process to
    itself. Nothing else: a column transformer's n_jobs would start processes and
    copy every chunk to them."""
    from common.models.compilation import parts

    for part in parts(pipeline):
        if hasattr(part, "estimators_") and "n_jobs" in part.get_params(deep=False):
            part.set_params(n_jobs=-1)
    return pipeline


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
