"""Model artifacts on any fsspec filesystem: written with a sha256, verified before
unpickling.

The store is a local directory by default; any fsspec URL (`s3://bucket/models`,
`gs://…`, `memory://…`) works by setting, with the backend package installed and its
credentials in the environment. Unpickling runs code, so bytes that do not match the
recorded digest are never handed to joblib, whatever the store: tampered, truncated and
swapped files are all refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from common.errors import ArtifactError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredArtifact:
    url: str
    sha256: str
    size_bytes: int


def artifact_url(root: str, relative: str) -> str:
    """The location of `relative` (a registry path, always with `/`) under `root`."""
    return f"{root.rstrip('/')}/{relative}"


def write_artifact(obj: Any, url: str) -> StoredArtifact:
    """Dump `obj` with joblib and store it at `url`.

    Locally the bytes go to a temporary file beside the target, are fsynced and renamed,
    so a crash never leaves a half-written file under the final name. Elsewhere one
    write puts the whole object (object stores make a PUT atomic).
    """
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return write_artifact_bytes(buffer.getvalue(), url)


def write_artifact_bytes(data: bytes, url: str) -> StoredArtifact:
    """Store bytes already dumped (a registration's bundle) at `url`, as above."""
    digest = hashlib.sha256(data).hexdigest()
    fs, path = url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        _write_local(Path(path), data)
    else:
        try:
            fs.pipe_file(path, data)
        except FileNotFoundError:  # a filesystem with real folders: make them first
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(path, data)
    return StoredArtifact(url=url, sha256=digest, size_bytes=len(data))


def read_artifact(url: str, sha256: str, size_bytes: int | None = None) -> Any:
    """Load an artifact only when its bytes match the recorded sha256.

    Raises
    ------
    ArtifactError
        When the file is missing or unreadable, has another size or digest, or fails
        to load.
    """
    data = verified_bytes(url, sha256, size_bytes)
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # a matching digest with a bad payload: written broken
        raise ArtifactError(
            f"artifact {url} cannot be loaded: {exc}", path=url
        ) from exc


def verified_bytes(url: str, sha256: str, size_bytes: int | None = None) -> bytes:
    """The artifact's bytes, checked against its size and sha256; nothing unpickled.

    Raises
    ------
    ArtifactError
        When the file is missing or unreadable, or has another size or digest.
    """
    try:
        fs, path = url_to_fs(url)
        data: bytes = fs.cat_file(path)
    except Exception as exc:  # each backend has its own errors: all mean unreadable
        raise ArtifactError(f"cannot read artifact {url}: {exc}", path=url) from exc
    if size_bytes is not None and len(data) != size_bytes:
        raise ArtifactError(
            f"artifact {url} is {len(data)} bytes, expected {size_bytes} "
            "(truncated or replaced); refusing to load it",
            path=url,
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"artifact {url} has sha256 {actual[:12]}…, expected {sha256[:12]}… "
            "(tampered or replaced); refusing to load it",
            path=url,
        )
    return data


def remove_artifact(url: str) -> None:
    """Delete the artifact at `url`; one already gone is not an error."""
    fs, path = url_to_fs(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=".tmp-", suffix=".joblib"
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
