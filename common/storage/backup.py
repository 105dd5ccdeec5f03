"""Online backup and restore: the database, every version's artifact and the named
datasets, with a manifest of sha256s, taken while the system serves.

SQLite is copied with its backup API (a consistent snapshot; writers go on), and
the artifacts listed in that copy are read, checked against their sha256 and
copied. PostgreSQL is dumped with `pg_dump --format=custom` (one snapshot) of the
schema ModelOps uses only (a shared database keeps its other schemas out of the
backup) and restored with `pg_restore` into a schema of the same name. The
manifest is written last, so a backup cut short has none and is refused.
Restoring goes into a fresh home only and checks every file first, naming each one
that is missing or damaged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, make_url, text

from common.clock import to_iso, utcnow
from common.config import Settings
from common.errors import ConflictError, DependencyError, InvalidInputError
from common.jobs.scoring import OUTPUTS, UPLOADS
from common.models.artifacts import artifact_url, verified_bytes, write_artifact_bytes
from common.storage.db import make_engine
from common.storage.migrate import current_revision, upgrade_database

MANIFEST = "manifest.json"
FORMAT = 1
SQLITE_FILE = "modelops.db"
POSTGRES_FILE = "database.dump"
ARTIFACTS = "artifacts"
COMPILED_ARTIFACTS = (" UNION ALL SELECT onnx_path, onnx_sha256, onnx_size_bytes "
                      "FROM model_versions WHERE onnx_path IS NOT NULL")  # fmt: skip
DATA = "data"
TRANSIENT = (UPLOADS, OUTPUTS)  # batch-scoring files beat removes after a while
Progress = Callable[[str], None]


class BackupError(InvalidInputError):
    """A backup that cannot be restored; `problems` names each file at fault."""


def backup(
    settings: Settings, directory: Path, progress: Progress = print
) -> dict[str, Any]:
    """Copy the database and the artifacts into `directory` (new or empty)."""
    started = time.monotonic()
    if directory.exists() and any(directory.iterdir()):
        raise InvalidInputError(
            f"{directory} is not empty: back up into a new directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
    url = make_url(settings.database_url)
    schema = None
    if url.get_backend_name() == "sqlite":
        database = directory / SQLITE_FILE
        _copy_sqlite(Path(url.database or ""), database, progress)
        listing_url = f"sqlite:///{database}"
    else:
        database = directory / POSTGRES_FILE
        schema = _current_schema(settings.database_url)
        progress(f"dumping PostgreSQL schema {schema} with pg_dump")
        _run(["pg_dump", "--format=custom", "--no-owner", "--schema", schema,
              "--file", str(database), _libpq_url(settings.database_url)])  # fmt: skip
        listing_url = settings.database_url
    versions = _versions(listing_url)
    files = {database.name: _digest(database)}
    for index, (path, sha256, size) in enumerate(versions, start=1):
        data = verified_bytes(artifact_url(settings.artifact_dir, path), sha256, size)
        target = directory / ARTIFACTS / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files[f"{ARTIFACTS}/{path}"] = {"sha256": sha256, "size": len(data)}
        progress(f"artifact {index}/{len(versions)}: {path}")
    datasets = _datasets(Path(settings.data_dir))
    for index, (relative, source) in enumerate(datasets, start=1):
        target = directory / DATA / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        files[f"{DATA}/{relative}"] = _digest(target)
        progress(f"dataset {index}/{len(datasets)}: {relative}")
    revision = _revision(listing_url)
    manifest = {
        "format": FORMAT,
        "created_at": to_iso(utcnow()),
        "database": {
            "kind": url.get_backend_name(),
            "file": database.name,
            "revision": revision,
            **({"schema": schema} if schema else {}),
        },
        "files": files,
    }
    temporary = directory / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    temporary.replace(directory / MANIFEST)  # last: a cut-short backup has none
    return {"directory": str(directory), "database": database.name,
            "artifacts": len(versions), "revision": revision,
            "bytes": sum(f["size"] for f in files.values()),
            "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


def verify(directory: Path) -> dict[str, Any]:
    """The manifest of a complete, undamaged backup; BackupError naming every
    missing, damaged or unexpected file otherwise."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} has no {MANIFEST}: not a backup, or one that "
                          "did not finish", directory=str(directory))  # fmt: skip
    try:
        manifest = json.loads(path.read_text())
        files: dict[str, dict[str, Any]] = manifest["files"]
        database = manifest["database"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is damaged: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    problems = []
    for name, expected in sorted(files.items()):
        file = directory / name
        if not file.is_file():
            problems.append({"field": name, "code": "missing",
                             "message": f"{name} is missing"})  # fmt: skip
            continue
        actual = _digest(file)
        if actual != expected:
            problems.append({"field": name, "code": "damaged", "message": (
                f"{name} does not match the manifest (sha256 {actual['sha256'][:12]}, "
                f"{actual['size']} bytes; expected {expected['sha256'][:12]}, "
                f"{expected['size']} bytes)")})  # fmt: skip
    if database.get("file") not in files:
        problems.append({"field": "database", "code": "missing",
                         "message": "the manifest lists no database file"})  # fmt: skip
    if problems:
        raise BackupError(f"the backup in {directory} is damaged: "
                          + "; ".join(p["message"] for p in problems),
                          problems=problems)  # fmt: skip
    return manifest


def restore(
    settings: Settings, directory: Path, progress: Progress = print
) -> dict[str, Any]:
    """Restore a verified backup into a fresh home (no tables in its database)."""
    manifest = verify(directory)
    kind = manifest["database"]["kind"]
    url = make_url(settings.database_url)
    if url.get_backend_name() != kind:
        raise InvalidInputError(f"the backup holds a {kind} database; this home uses "
                                f"{url.get_backend_name()}")  # fmt: skip
    if kind == "postgresql":
        _use_schema(settings.database_url, manifest["database"].get("schema", "public"))
    _require_fresh(settings)
    source = directory / manifest["database"]["file"]
    if kind == "sqlite":
        target = Path(url.database or "")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".restoring")
        shutil.copyfile(source, temporary)
        temporary.replace(target)
    else:
        progress("restoring PostgreSQL with pg_restore")
        _pg_restore(settings.database_url, source)
    for name in manifest["files"]:
        if name.startswith(f"{DATA}/"):
            target = Path(settings.data_dir) / name.removeprefix(f"{DATA}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(directory / name, target)
    artifacts = [name for name in manifest["files"] if name.startswith(f"{ARTIFACTS}/")]
    for index, name in enumerate(artifacts, start=1):
        relative = name.removeprefix(f"{ARTIFACTS}/")
        write_artifact_bytes((directory / name).read_bytes(),
                             artifact_url(settings.artifact_dir, relative))  # fmt: skip
        progress(f"artifact {index}/{len(artifacts)}: {relative}")
    engine = make_engine(settings)
    try:
        upgrade_database(engine)  # a backup of an older release is brought up to date
        revision = current_revision(engine)
    finally:
        engine.dispose()
    return {"directory": str(directory), "artifacts": len(artifacts),
            "revision": revision}  # fmt: skip


def _copy_sqlite(source: Path, target: Path, progress: Progress) -> None:
    if not source.is_file():
        raise InvalidInputError(f"no database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        progress(f"copying the database ({source.stat().st_size:,} bytes)")
        # One step: a read transaction holds the snapshot while writers go on (WAL);
        # a copy in steps would start over each time another connection writes.
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def _datasets(root: Path) -> list[tuple[str, Path]]:
    """Named datasets (what retrains read), not batch-scoring files."""
    if not root.is_dir():
        return []
    return sorted(
        (path.relative_to(root).as_posix(), path)
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] not in TRANSIENT
    )


def _versions(url: str) -> list[tuple[str, str, int | None]]:
    """Every version's artifacts: its pipeline and, where it compiled, its ONNX
    model (a database from before migration 0013 has no such column)."""
    engine = create_engine(url)
    query = "SELECT artifact_path, sha256, size_bytes FROM model_versions"
    try:
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns(
                "model_versions")}  # fmt: skip
            if "onnx_path" in columns:
                query += COMPILED_ARTIFACTS
            rows = connection.execute(text(query)).all()
    finally:
        engine.dispose()
    return [(path, sha256, size) for path, sha256, size in rows]


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def _current_schema(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            schema = connection.scalar(text("SELECT current_schema()"))
    finally:
        engine.dispose()
    if not schema:
        raise InvalidInputError("the database's search_path names no existing schema: "
                                "nothing to back up")  # fmt: skip
    return str(schema)


def _use_schema(database_url: str, schema: str) -> None:
    """Create the backup's schema if missing, and make sure this home uses it:
    pg_restore cannot put a schema's tables under another name."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            path = str(connection.scalar(text("SHOW search_path")))
            first = path.split(",")[0].strip().strip('"')
            if first == "$user":
                first = str(connection.scalar(text("SELECT current_user")))
            if first != schema:
                raise InvalidInputError(
                    f"the backup holds PostgreSQL schema {schema!r}; this home's "
                    f"database uses {first!r} (search_path {path}): point "
                    f"MODELOPS_DATABASE_URL's search_path at {schema!r}",
                    schema=schema,
                )
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def _pg_restore(database_url: str, dump: Path) -> None:
    """Restore every entry but the schema itself (it exists: `_use_schema`), so a
    fresh database's own `public` does not stop the restore."""
    entries = [line for line in _run(["pg_restore", "--list", str(dump)]).splitlines()
               if " SCHEMA - " not in line]  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".list") as selection:
        selection.write("\n".join(entries) + "\n")
        selection.flush()
        _run(["pg_restore", "--no-owner", "--exit-on-error", "--use-list",
              selection.name, "--dbname", _libpq_url(database_url),
              str(dump)])  # fmt: skip


def _require_fresh(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise ConflictError(
            "restore goes into a fresh home: this one's database already has tables "
            f"({', '.join(sorted(tables)[:5])}, ...)", tables=len(tables),
        )  # fmt: skip


def _digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "size": path.stat().st_size}


def _libpq_url(database_url: str) -> str:
    """The URL as libpq's tools read it (no SQLAlchemy driver suffix)."""
    return (
        make_url(database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def _run(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        raise DependencyError(
            f"{command[0]} is not installed: the PostgreSQL client tools are needed "
            "to back up and restore PostgreSQL"
        )
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DependencyError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout
