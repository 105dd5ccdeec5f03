"""Model artifacts: written atomically with a sha256, verified before unpickling.

Unpickling runs code, so a file whose bytes do not match the recorded digest is never
handed to joblib: tampered, truncated and swapped files are all refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from common.errors import ArtifactError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredArtifact:
    path: Path
    sha256: str
    size_bytes: int


def write_artifact(obj: Any, path: Path) -> StoredArtifact:
    """Dump `obj` with joblib to a temporary file beside `path`, fsync, then rename.

    A reader never sees a half-written file at `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=".tmp-", suffix=".joblib"
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            joblib.dump(obj, stream, compress=3)
            stream.flush()
            os.fsync(stream.fileno())
        digest = sha256_file(temp)
        size = temp.stat().st_size
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return StoredArtifact(path=path, sha256=digest, size_bytes=size)


def read_artifact(path: Path, sha256: str, size_bytes: int | None = None) -> Any:
    """Load an artifact only when its bytes match the recorded sha256.

    Raises
    ------
    ArtifactError
        When the file is missing, has another size or digest, or fails to load.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            f"cannot read artifact {path}: {exc}", path=str(path)
        ) from exc
    if size_bytes is not None and len(data) != size_bytes:
        raise ArtifactError(
            f"artifact {path} is {len(data)} bytes, expected {size_bytes} "
            "(truncated or replaced); refusing to load it",
            path=str(path),
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"artifact {path} has sha256 {actual[:12]}…, expected {sha256[:12]}… "
            "(tampered or replaced); refusing to load it",
            path=str(path),
        )
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # a matching digest with a bad payload: written broken
        raise ArtifactError(
            f"artifact {path} cannot be loaded: {exc}", path=str(path)
        ) from exc


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of %s not supported", directory)
    finally:
        os.close(fd)
