"""Bring your own model: register a version from a skops file (or, when allowed, a
joblib or pickle file) and the reference data it was made for.

The file is loaded, checked and described in a separate process with a time and
memory limit (`import_check`); only its answer and the bundle it wrote come back.
The registry then stores the bundle with its sha256, like a version trained here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from common.config import Settings
from common.errors import InvalidInputError, UnprocessableDataError
from common.models import catalog, registry
from common.models.compilation import Compilation
from common.storage.tables import ModelVersion

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # where `common` imports from
ZIP_MAGIC = b"PK\x03\x04"  # a skops file is a zip archive
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".jbl")
# What a pickle or a joblib file starts with: protocol 2+, or joblib's compressors.
PICKLE_MAGICS = (
    b"\x80",
    b"\x78",
    b"\x1f\x8b",
    b"\xfd7zXZ",
    b"BZh",
    b"\x04\x22\x4d\x18",
)
# The settings the child's checks use (data validation and the profile).
CHILD_SETTINGS = ("random_state", "min_training_rows", "min_class_rows",
                  "max_categories", "profile_bins", "profile_sample_size")  # fmt: skip


@dataclass(frozen=True)
class ImportRequest:
    """One registration: which model, which file, which reference data."""

    name: str
    artifact: Path
    filename: str
    reference: Path
    target: str
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    promote: bool = False
    description: str | None = None
    task: str | None = None
    actor: str = "cli"
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Registered:
    version: ModelVersion
    promoted: bool
    warnings: list[str]


def file_format(path: Path, filename: str) -> str:
    """`skops` or `pickle`, from the file's first bytes (and name).

    Raises
    ------
    InvalidInputError
        The file is empty, or neither a skops (zip) nor a joblib/pickle file.
    """
    with path.open("rb") as stream:
        head = stream.read(8)
    if not head:
        raise InvalidInputError("the model file is empty", field="artifact")
    if head.startswith(ZIP_MAGIC):
        return "skops"
    if head.startswith(PICKLE_MAGICS) or filename.lower().endswith(PICKLE_SUFFIXES):
        return "pickle"
    raise InvalidInputError(
        f"{filename or 'the model file'} is not a model file: expected a skops file "
        "(.skops, a zip archive) or a joblib/pickle file",
        field="artifact",
    )


def register_file(
    session: Session, settings: Settings, request: ImportRequest
) -> Registered:
    """Check the file in a limited process and register it as a new version of
    `request.name` (created with the file's task when new; a new model's first
    version becomes its champion).

    Raises
    ------
    InvalidInputError
        A bad name, a file that is not a model, or a pickle without permission.
    UnprocessableDataError
        The model is refused: untrusted types, no predict, predictions fail on the
        reference, the target is missing, a limit was hit (each with its reason).
    ConflictError
        The model exists with another task.
    """
    catalog.check_model_name(request.name)
    fmt = file_format(request.artifact, request.filename)
    if fmt == "pickle" and not request.allow_pickle:
        raise InvalidInputError(
            f"{request.filename or 'the file'} is a joblib/pickle file, and loading "
            "one runs any code it holds; register a skops file instead, or allow "
            "pickle explicitly (--allow-pickle; allow_pickle=true in the API, which "
            "the operator must permit with MODELOPS_ALLOW_PICKLE)",
            field="artifact", format="pickle",
        )  # fmt: skip
    existing = catalog.find_model(session, request.name)
    if existing is not None and request.task and existing.task != request.task:
        catalog.ensure_model(session, request.name, request.task)  # the 409
    trusted = sorted({*settings.trusted_types, *request.trusted_types})
    with tempfile.TemporaryDirectory(prefix="modelops-import-") as work:
        described, bundle = _check_in_child(settings, request, fmt, trusted, Path(work))
    scoped = settings.for_model(request.name)
    catalog.ensure_model(session, request.name, described["task"],
                         description=request.description,
                         source=request.source)  # fmt: skip
    row = ModelVersion(
        model_type=described["model_type"],
        target=request.target,
        feature_names=described["feature_names"],
        classes=described["classes"],
        input_schema=described["input_schema"],
        reference_profile=described["reference_profile"],
        metrics=described["metrics"],
        accuracy=described["accuracy"],
        f1_score=described["f1_score"],
        training_data_size=0,  # not trained here
        params={},
        data_fingerprint=_sha256(request.reference),
        dataset=None,
        task=described["task"],
        provenance={
            "format": fmt, "filename": request.filename[:200],
            "sha256": _sha256(request.artifact),
            "size_bytes": request.artifact.stat().st_size,
            "trusted_types": described["trusted_types"],  # those the file held
            "reference_rows": described["rows"],
        },
    )  # fmt: skip
    reason = f"registered from {request.filename or 'a file'}"
    version = registry.register_bundle(session, scoped, bundle, row, reason=reason,
                                       actor=request.actor,
                                       compiled=described["compiled"])  # fmt: skip
    promote = request.promote or registry.find_champion(session, scoped) is None
    if promote:
        registry.promote_version(session, scoped, version.version, reason=reason,
                                 actor=request.actor)  # fmt: skip
    log.info("registered model=%s version=%d task=%s format=%s", request.name,
             version.version, described["task"], fmt)  # fmt: skip
    return Registered(version, promote, described["warnings"])


def _check_in_child(
    settings: Settings,
    request: ImportRequest,
    fmt: str,
    trusted: list[str],
    work: Path,
) -> tuple[dict[str, Any], bytes]:
    """Run `import_check` with the time and memory limits; its answer and bundle."""
    job = {
        "artifact": str(request.artifact.resolve()), "format": fmt,
        "trusted": trusted, "reference": str(request.reference.resolve()),
        "target": request.target,
        "task": request.task, "out": str(work),
        "settings": {name: getattr(settings, name) for name in CHILD_SETTINGS},
    }  # fmt: skip
    (work / "request.json").write_text(json.dumps(job))
    limit = settings.register_memory_mb * 1024 * 1024
    timeout = settings.register_timeout_seconds
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    # The child starts where the caller works, so the user's own modules (a custom
    # transformer) import there as they would for the user; ModelOps comes first.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "common.models.import_check",
             str(work / "request.json")],
            env=env, capture_output=True,
            timeout=timeout, preexec_fn=lambda: _limit_memory(limit), check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UnprocessableDataError(
            f"checking the model took longer than {timeout} s "
            "(MODELOPS_REGISTER_TIMEOUT_SECONDS); it was stopped",
            code="timeout",
        ) from None
    result = work / "result.json"
    if not result.is_file():
        stderr = done.stderr.decode(errors="replace")[-2000:]
        raise UnprocessableDataError(_died(done, settings), code="crashed",
                                     stderr=stderr)  # fmt: skip
    answer = json.loads(result.read_text())
    if "error" in answer:
        error = answer["error"]
        raise UnprocessableDataError(
            f"model refused: {error['message']}", code=error["code"], **error["details"]
        )
    onnx = work / "model.onnx"
    described = answer["ok"]
    described["compiled"] = Compilation(
        onnx.read_bytes() if onnx.is_file() else None,
        described["compilation"]["reason"],
        described["compilation"]["check"],
    )
    return described, (work / "bundle.joblib").read_bytes()


def _limit_memory(limit: int) -> None:
    """In the child, before exec: cap its address space."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _died(done: subprocess.CompletedProcess[bytes], settings: Settings) -> str:
    code = done.returncode
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    if "MemoryError" in tail[0] or "Cannot allocate memory" in tail[0]:
        return (f"the model needs more than {settings.register_memory_mb} MB to "
                "load (MODELOPS_REGISTER_MEMORY_MB)")  # fmt: skip
    return f"the process checking the model {how}: {tail[0][:300]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
