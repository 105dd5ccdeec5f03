"""Backup while predictions are written, restore into a fresh home: the same
champions, versions, history and labels; a damaged backup is refused by name."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, make_url, select, text

from common.config import Settings, get_settings
from common.monitoring.metrics import compute_window_metrics
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from common.storage.tables import FeedbackLabel, PredictionLog
from services.cli import main
from tests.conftest import train_champion
from tests.databases import INTEGRATION_BACKENDS, POSTGRES_URL, empty_database
from tests.logged import logged

pytestmark = pytest.mark.integration


def _home(path: Path, database_url: str = "") -> Settings:
    extra = {"database_url": database_url} if database_url else {}
    return Settings(home=str(path), demo_rows=600, profile_sample_size=200, **extra)


@contextmanager
def _fresh_database(source: Settings) -> Iterator[str]:
    """Where a restore goes: the fresh home's own SQLite file, or a new PostgreSQL
    database (dropped after) whose search_path names the source's schema."""
    if make_url(source.database_url).get_backend_name() == "sqlite":
        yield ""
        return
    name = f"restore_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(source.database_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=INTEGRATION_BACKENDS)
def serving_home(request, tmp_path):
    """A home with two versions, logged predictions and labels, and where a restore
    of it may go."""
    with empty_database(_home(tmp_path / "live"), request.param) as settings:
        engine = make_engine(settings)
        upgrade_database(engine)
        factory = make_session_factory(engine)
        data = Path(settings.data_dir)
        (data / "uploads").mkdir(parents=True)
        (data / "base.csv").write_text("age,churned\n40,1\n")  # a retrain's source
        (data / "uploads" / "batch.csv").write_text("age\n40\n")  # beat removes these
        with session_scope(factory) as session:
            train_champion(session, settings)
            version = train_champion(session, settings)
            for index in range(50):
                logged(session, model_version_id=version.id, prediction="1",
                       label="1" if index % 5 else "0")  # fmt: skip
        with _fresh_database(settings) as target:
            yield settings, factory, _home(tmp_path / "fresh", target)
        engine.dispose()


def _cli(settings: Settings, *args: str):
    """A command as a user runs it in the home of `settings` (a new process reads
    its settings)."""
    get_settings.cache_clear()
    home = Path(settings.home)
    postgres = settings.database_url.startswith("postgresql")
    env = {
        "MODELOPS_HOME": str(home),
        "MODELOPS_CONFIG_FILE": str(home / "absent.toml"),
        "MODELOPS_DATABASE_URL": settings.database_url if postgres else None,
    }
    try:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def _tables(settings: Settings) -> list[str]:
    engine = make_engine(settings)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _state(settings: Settings) -> dict:
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            window = compute_window_metrics(session, "default", minutes=60)
            return {
                "champion": _cli_champion(session),
                "logged": session.scalar(select(func.count(PredictionLog.id))),
                "labels": session.scalar(select(func.count(FeedbackLabel.id))),
                "requests": window["request_count"],
                "accuracy": window["accuracy"],
            }
    finally:
        engine.dispose()


def _cli_champion(session) -> int | None:
    from common.storage.tables import Champion, ModelVersion

    return session.scalar(
        select(ModelVersion.version).join(
            Champion, Champion.model_version_id == ModelVersion.id
        )
    )


def test_a_backup_taken_while_serving_restores_into_a_fresh_home(
    serving_home, tmp_path
):
    settings, factory, fresh = serving_home
    stop = threading.Event()

    def keep_logging() -> None:  # the API's writer goes on during the backup
        while not stop.is_set():
            with session_scope(factory) as session:
                logged(session, prediction="1")

    writer = threading.Thread(target=keep_logging)
    writer.start()
    try:
        done = _cli(settings, "backup", str(tmp_path / "backup"))
    finally:
        stop.set()
        writer.join()
    assert done.exit_code == 0, done.output
    assert "4 artifacts" in done.output  # two versions, each compiled too
    restored = _cli(fresh, "restore", str(tmp_path / "backup"))
    assert restored.exit_code == 0, restored.output
    assert (Path(fresh.data_dir) / "base.csv").read_text() == "age,churned\n40,1\n"
    assert not (Path(fresh.data_dir) / "uploads").exists()
    state = _state(fresh)
    assert state["champion"] == 2 and state["labels"] == 50
    assert state["requests"] == state["logged"] >= 50  # rows and rollups agree
    assert state["accuracy"] == pytest.approx(0.8)
    from common.models import registry

    engine = make_engine(fresh)
    with session_scope(make_session_factory(engine)) as session:
        champion = registry.get_champion(session, fresh).model_version
        assert registry.load_model(fresh, champion) is not None  # sha256 checked
        # Its compiled model came back too, checked against its own sha256.
        assert registry.load_scorer(fresh, champion).runtime == "onnx"
    engine.dispose()
    again = _cli(fresh, "restore", str(tmp_path / "backup"))
    assert again.exit_code != 0 and "fresh home" in again.output


@pytest.mark.parametrize("damage", ["artifact", "database", "manifest"])
def test_a_damaged_backup_is_refused_and_names_what_is_wrong(
    serving_home, tmp_path, damage
):
    settings, _, fresh = serving_home
    backup = tmp_path / "backup"
    assert _cli(settings, "backup", str(backup)).exit_code == 0
    if damage == "artifact":
        artifact = next((backup / "artifacts").rglob("*.joblib"))
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
        words = f"artifacts/{artifact.relative_to(backup / 'artifacts')} does not match"
    elif damage == "database":
        dump = next(backup.glob("modelops.db")) if settings.database_url.startswith(
            "sqlite") else backup / "database.dump"  # fmt: skip
        dump.unlink()
        words = f"{dump.name} is missing"
    else:
        (backup / "manifest.json").unlink()
        words = "has no manifest.json"
    refused = _cli(fresh, "restore", str(backup))
    assert refused.exit_code != 0
    assert words in refused.output
    assert _tables(fresh) == []  # nothing half-restored


@pytest.mark.parametrize(
    "serving_home", [b for b in INTEGRATION_BACKENDS if b == "postgresql"],
    indirect=True,
)  # fmt: skip
def test_a_postgresql_backup_goes_only_into_a_schema_of_its_own_name(
    serving_home, tmp_path
):
    settings, _, fresh = serving_home
    assert _cli(settings, "backup", str(tmp_path / "backup")).exit_code == 0
    public = make_url(fresh.database_url).update_query_dict(
        {"options": "-csearch_path=public"}
    )
    elsewhere = fresh.with_overrides(
        database_url=public.render_as_string(hide_password=False)
    )
    refused = _cli(elsewhere, "restore", str(tmp_path / "backup"))
    assert refused.exit_code != 0
    schema = make_url(settings.database_url).query["options"].split("=")[1]
    assert f"the backup holds PostgreSQL schema '{schema}'" in refused.output
    assert "uses 'public'" in refused.output
    assert _tables(elsewhere) == []
