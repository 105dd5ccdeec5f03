"""`POST /models`: a multipart registration, stored in a temporary folder for the
check and gone afterwards, whatever the outcome."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Any

from flask import request
from werkzeug.datastructures import FileStorage

from common.config import Settings
from common.errors import ForbiddenError, InvalidInputError
from common.models.importing import ImportRequest, register_file
from services.api import schemas
from services.api.database import get_session

COPY_CHUNK_BYTES = 1 << 20
REFERENCE_SUFFIXES = (".csv", ".parquet", ".pq")
TRUE = ("1", "true", "yes", "on")


def register_from_request(settings: Settings) -> dict[str, Any]:
    """Register the uploaded model; the 201 body.

    Raises
    ------
    InvalidInputError
        Not multipart, a missing field, a bad name, a reference that is not CSV or
        Parquet, a pickle without permission.
    ForbiddenError
        allow_pickle asked for while the operator has not enabled it.
    """
    if request.mimetype != "multipart/form-data":
        raise InvalidInputError(
            "send the model as multipart/form-data: fields name, artifact, "
            "reference, target (optional promote, description, allow_pickle, "
            "trusted_types, task)"
        )
    request.max_content_length = settings.upload_max_bytes
    form = request.form
    missing = [f for f in ("name", "target") if not form.get(f, "").strip()]
    missing += [f for f in ("artifact", "reference") if f not in request.files]
    if missing:
        raise InvalidInputError(
            f"missing multipart fields: {', '.join(missing)}",
            problems=[{"field": f, "code": "missing", "message": "required"}
                      for f in missing],
        )  # fmt: skip
    allow_pickle = form.get("allow_pickle", "").lower() in TRUE
    if allow_pickle and not settings.allow_pickle:
        raise ForbiddenError(
            "this deployment does not register pickle files over the API: loading "
            "one runs its code. The operator can allow it with "
            "MODELOPS_ALLOW_PICKLE=true, or register it with `modelops register "
            "--allow-pickle` on the host",
            setting="MODELOPS_ALLOW_PICKLE",
        )
    task = form.get("task") or None
    if task not in (None, "classification", "regression"):
        raise InvalidInputError("task must be classification or regression",
                                field="task")  # fmt: skip
    artifact, reference = request.files["artifact"], request.files["reference"]
    reference_name = (reference.filename or "").lower()
    if not reference_name.endswith(REFERENCE_SUFFIXES):
        raise InvalidInputError("the reference must be a .csv or .parquet file",
                                field="reference")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="modelops-upload-") as work:
        artifact_path = _save(artifact, Path(work) / "artifact")
        reference_path = _save(
            reference, Path(work) / f"reference{Path(reference_name).suffix}"
        )
        registered = register_file(get_session(), settings, ImportRequest(
            name=form["name"].strip(), artifact=artifact_path,
            filename=artifact.filename or "artifact", reference=reference_path,
            target=form["target"].strip(), allow_pickle=allow_pickle,
            trusted_types=tuple(t.strip() for t in form.get("trusted_types", "")
                                .split(",") if t.strip()),
            promote=form.get("promote", "").lower() in TRUE,
            description=(form.get("description") or "")[:2000] or None,
            task=task, actor="api",
        ))  # fmt: skip
        get_session().commit()
    version = registered.version
    return {
        "name": version.name,
        "version": version.version,
        "task": version.task,
        "promoted": registered.promoted,
        "model_type": version.model_type,
        "input_schema": version.input_schema,
        "metrics": version.metrics,
        "sha256": version.sha256,
        "warnings": registered.warnings,
        "model": schemas.model_version_out(version),
    }


def _save(upload: FileStorage, path: Path) -> Path:
    stream: IO[bytes] = upload.stream
    try:
        with path.open("wb") as out:
            while chunk := stream.read(COPY_CHUNK_BYTES):
                out.write(chunk)
    finally:
        upload.close()  # werkzeug's spooled copy: gone now, not at collection
    return path
