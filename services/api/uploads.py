"""Where a batch-scoring job reads from: an uploaded CSV or a named dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import request

from common.config import Settings
from common.data.datasets import BUILTIN, export_builtin, resolve_data_file
from common.errors import InvalidInputError
from common.jobs import scoring
from services.api.requests import parse_body
from services.api.schemas import BatchScoreRequest, BatchScoreUpload

# the fields of a multipart upload, as its documented schema names them
FORM_FIELDS = frozenset(BatchScoreUpload.model_fields)


def read_batch_source(settings: Settings) -> tuple[dict[str, Any], str]:
    """Return the job's params and reason; an upload is stored first.

    An upload over `upload_max_bytes` is refused with 413 from its Content-Length.
    """
    if request.mimetype != "multipart/form-data":
        body = parse_body(
            BatchScoreRequest,
            or_else="a CSV upload as multipart/form-data field 'file'",
        )
        source = _dataset_source(settings, body.dataset)
        reason = body.reason or f"batch scoring of {body.dataset}"
        return {"source": source, "dataset": body.dataset}, reason
    request.max_content_length = settings.upload_max_bytes
    _refuse_unknown_fields()
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInputError(
            "send the CSV as the multipart field 'file'", field="file"
        )
    filename = (upload.filename or "").strip()
    if not filename.lower().endswith(".csv"):
        raise InvalidInputError("the upload must be a .csv file", field="file")
    source = scoring.save_upload(settings, upload.stream, settings.upload_max_bytes)
    reason = (request.form.get("reason") or "")[:500] or f"batch scoring of {filename}"
    return {"source": source, "filename": filename[:200]}, reason


def _refuse_unknown_fields() -> None:
    """A form field this call does not read is an error, not silently ignored: a
    `model` field would otherwise have the file scored by the default model."""
    unknown = sorted((set(request.form) | set(request.files)) - FORM_FIELDS)
    if not unknown:
        return
    hint = ""
    if "model" in unknown:
        hint = " (the model is chosen in the URL: ?model=<name>)"
    raise InvalidInputError(
        f"unknown form field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
        f"send the CSV as the field 'file', and optionally a 'reason'{hint}",
        field=unknown[0], allowed=sorted(FORM_FIELDS),
    )  # fmt: skip


def _dataset_source(settings: Settings, name: str) -> str:
    """A file of the data directory by name, else a built-in dataset written out as
    one. Raises 400 for a name outside the folder, 404 for one that is neither."""
    if name in BUILTIN and not (Path(settings.data_dir) / name).is_file():
        return export_builtin(settings, name)
    resolve_data_file(settings, name)
    return name
