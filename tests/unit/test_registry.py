from __future__ import annotations

import hashlib
import os
import pickle
import uuid
from collections.abc import Iterator

import pytest
from fsspec.core import url_to_fs
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from common.config import Settings
from common.errors import ArtifactError, ConflictError, ModelNotFoundError
from common.models import registry
from common.models.artifacts import artifact_url
from common.storage.tables import AuditEvent, ModelVersion
from tests.factories import make_job, register_version, train_result


@pytest.fixture(params=["local", "memory"])
def store_settings(
    request: pytest.FixtureRequest, db_settings: Settings
) -> Iterator[Settings]:
    """The registry on a local directory and on a non-local fsspec filesystem
    (`memory://`, standing in for s3:// or gs://): the same guarantees on both."""
    if request.param == "local":
        yield db_settings
        return
    root = f"memory://artifacts-{uuid.uuid4().hex[:8]}"
    yield db_settings.with_overrides(artifact_dir=root)
    fs, path = url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _url(settings: Settings, version: ModelVersion) -> str:
    return artifact_url(settings.artifact_dir, version.artifact_path)


def _read(url: str) -> bytes:
    fs, path = url_to_fs(url)
    return fs.cat_file(path)


def _write(url: str, data: bytes) -> None:
    fs, path = url_to_fs(url)
    fs.pipe_file(path, data)


def _stored_files(settings: Settings) -> list[str]:
    """Every file under the artifact store, temporary ones included."""
    fs, root = url_to_fs(settings.artifact_dir)
    return fs.find(root) if fs.exists(root) else []


def test_register_writes_verified_artifact_and_metadata(
    session, store_settings, churn_frame
):
    version = register_version(session, store_settings, churn_frame, "churned")
    stored = _read(_url(store_settings, version))
    assert hashlib.sha256(stored).hexdigest() == version.sha256
    assert version.size_bytes == len(stored)
    assert version.version == 1 and version.state == "candidate"
    assert version.feature_names == [
        "age",
        "income",
        "tenure_months",
        "monthly_spend",
        "support_calls",
        "usage_hours",
        "plan",
        "region",
    ]
    schema = {item["name"]: item for item in version.input_schema}
    assert schema["plan"]["type"] == "category" and schema["age"]["min"] >= 18
    assert version.reference_profile["features"]["age"]["cut_points"]
    assert version.metrics["f1_score"] == version.f1_score
    assert len(version.data_fingerprint) == 64
    # The pipeline and its compiled model, no temporary file left behind.
    assert sorted(f.rsplit(".", 1)[1] for f in _stored_files(store_settings)) == [
        "joblib", "onnx"]  # fmt: skip
    assert version.runtime == "onnx" and version.runtime_reason is None
    onnx = _read(artifact_url(store_settings.artifact_dir, version.onnx_path))
    assert hashlib.sha256(onnx).hexdigest() == version.onnx_sha256
    model = registry.load_model(store_settings, version)
    assert model.predict(churn_frame.drop(columns="churned").head(2)).shape == (2,)


def test_versions_number_up_and_list_newest_first(session, store_settings, churn_frame):
    for _ in range(3):
        register_version(session, store_settings, churn_frame, "churned")
    assert [v.version for v in registry.list_versions(session, store_settings)] == [
        3,
        2,
        1,
    ]
    with pytest.raises(ModelNotFoundError):
        registry.get_version(session, store_settings, 9)


def test_tampered_artifact_is_never_unpickled(
    session, store_settings, churn_frame, tmp_path
):
    version = register_version(session, store_settings, churn_frame, "churned")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    _write(_url(store_settings, version), pickle.dumps(Exploit()))
    with pytest.raises(ArtifactError, match="refusing to load"):
        registry.load_model(store_settings, version)
    assert not marker.exists()


def test_truncated_and_missing_artifacts_are_refused(
    session, store_settings, churn_frame
):
    version = register_version(session, store_settings, churn_frame, "churned")
    url = _url(store_settings, version)
    _write(url, _read(url)[:100])
    with pytest.raises(ArtifactError, match="truncated"):
        registry.load_model(store_settings, version)
    fs, path = url_to_fs(url)
    fs.rm_file(path)
    with pytest.raises(ArtifactError, match="cannot read"):
        registry.load_model(store_settings, version)


def test_promote_and_rollback_bump_generation_and_audit(
    session, store_settings, churn_frame
):
    for _ in range(3):
        register_version(session, store_settings, churn_frame, "churned")
    generations = [
        registry.promote_version(
            session, store_settings, v, reason=f"go {v}"
        ).generation
        for v in (1, 2, 3)
    ]
    assert generations == [1, 2, 3]
    states = {
        v.version: v.state for v in registry.list_versions(session, store_settings)
    }
    assert states == {3: "champion", 2: "retired", 1: "retired"}

    champion = registry.rollback(session, store_settings, reason="bad v3")
    assert (champion.model_version.version, champion.generation) == (2, 4)
    champion = registry.rollback(session, store_settings, reason="bad v2")
    assert (champion.model_version.version, champion.generation) == (1, 5)
    with pytest.raises(ConflictError, match="no previous champion"):
        registry.rollback(session, store_settings, reason="nothing left")

    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["register"] * 3 + ["promote"] * 3 + ["rollback"] * 2


def test_promoting_the_champion_or_unknown_version_is_refused(
    session, store_settings, churn_frame
):
    register_version(session, store_settings, churn_frame, "churned")
    registry.promote_version(session, store_settings, 1, reason="first")
    with pytest.raises(ConflictError, match="already the champion"):
        registry.promote_version(session, store_settings, 1, reason="again")
    with pytest.raises(ModelNotFoundError):
        registry.promote_version(session, store_settings, 42, reason="nope")
    assert registry.get_champion(session, store_settings).generation == 1


def test_registration_is_keyed_by_job(session, store_settings, churn_frame):
    job = make_job(session)
    result = train_result(store_settings, churn_frame, "churned")
    first = registry.register_model(
        session, store_settings, result, reason="r", job_id=job.id
    )
    again = registry.register_model(
        session, store_settings, result, reason="r", job_id=job.id
    )
    assert first.id == again.id
    assert (
        session.scalar(select(ModelVersion.id).where(ModelVersion.version == 2)) is None
    )


def test_failed_registration_leaves_no_artifact_and_no_row(
    session, store_settings, churn_frame
):
    result = train_result(store_settings, churn_frame, "churned")
    with pytest.raises(IntegrityError):  # job 999 does not exist
        registry.register_model(session, store_settings, result, reason="r", job_id=999)
    session.rollback()
    assert registry.list_versions(session, store_settings) == []
    assert _stored_files(store_settings) == []


def test_a_lost_race_for_a_version_number_takes_the_next_one(
    session, store_settings, churn_frame, monkeypatch
):
    register_version(session, store_settings, churn_frame, "churned")
    session.commit()
    from common.storage import repositories

    numbers = iter([1, 2])  # the first guess collides, as when another worker won
    monkeypatch.setattr(repositories, "next_version_number", lambda *_: next(numbers))
    result = train_result(
        store_settings, churn_frame, "churned", model_type="random_forest"
    )
    version = registry.register_model(session, store_settings, result, reason="race")
    session.commit()
    assert version.version == 2
    assert [v.version for v in registry.list_versions(session, store_settings)] == [
        2,
        1,
    ]
    folders = sorted(path.split("/")[-2] for path in _stored_files(store_settings))
    # Each version's pipeline and compiled model: the loser's in version 1 removed.
    assert folders == ["1", "1", "2", "2"]


def test_a_damaged_artifact_never_becomes_champion(
    session, store_settings, churn_frame
):
    for _ in range(2):
        register_version(session, store_settings, churn_frame, "churned")
    registry.promote_version(session, store_settings, 1, reason="first")
    url = _url(store_settings, registry.get_version(session, store_settings, 2))
    _write(url, _read(url)[:-10])
    with pytest.raises(ArtifactError, match="version 2 cannot serve") as caught:
        registry.promote_version(session, store_settings, 2, reason="go")
    assert caught.value.status == 409 and caught.value.details["version"] == 2
    champion = registry.get_champion(session, store_settings)
    assert (champion.model_version.version, champion.generation) == (1, 1)
