"""Batch scoring: a CSV streamed in chunks through the champion to an output CSV.

Memory is bounded by `score_chunk_rows`. Columns the model does not use (an id, a true
label) pass through. A row with an invalid value gets an `error` text instead of a
prediction; the job goes on.
"""

from __future__ import annotations

import codecs
import csv
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import compute as pc
from pyarrow import csv as pa_csv
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import utcnow
from common.config import Settings
from common.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnprocessableDataError,
)
from common.jobs.progress import ProgressCallback
from common.models import registry
from common.models.prediction import Scores
from common.models.runtime import Scorer
from common.models.schemas import FeatureSpec
from common.models.validation import largest_plausible
from common.storage.db import session_scope
from common.storage.tables import Job, ModelVersion

log = logging.getLogger(__name__)

UPLOADS = "uploads"
OUTPUTS = "outputs"
RESERVED = ("prediction", "confidence", "error", "model_version")
COPY_CHUNK_BYTES = 1 << 20
# Rows of the first chunk each runtime scores (for real: its answers are kept) to
# pick the faster for the rest: large enough that per-call costs do not decide (ONNX
# Runtime wins a few thousand rows, scikit-learn's forest on every core can win tens
# of thousands). Below MIN_TIMING_ROWS each the choice would be noise: the first
# candidate scores.
TIMING_ROWS = 20_000
MIN_TIMING_ROWS = 2_000
SNIFF_BYTES = 1 << 16  # the start of an upload is checked to be UTF-8 text
HEADER_SAFE = re.compile(r'^[^,"\r\n]*$')
# Cells read as missing, in every column, by either reader (pandas' defaults)
MISSING_TEXTS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                 "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                 "nan", "null"]  # fmt: skip
# A file estimated (from its first lines: a few per cent off) at up to this many
# chunks' rows is read whole, on every core, then cut into chunks
ONE_CHUNK_SLACK = 1.2
KEPT_VERSIONS = 2  # versions whose loaded scorers a worker keeps between jobs
_KEPT: OrderedDict[tuple[Any, ...], list[Scorer]] = OrderedDict()
_KEPT_LOCK = threading.Lock()


def save_upload(settings: Settings, stream: IO[bytes], limit_bytes: int) -> str:
    """Copy an uploaded CSV into the uploads folder; return its data-dir-relative name.

    Raises
    ------
    InvalidInputError
        When the upload is empty.
    """
    folder = Path(settings.data_dir) / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.csv"
    size = 0
    text = codecs.getincrementaldecoder("utf-8")()
    try:
        with (folder / name).open("wb") as out:
            while chunk := stream.read(COPY_CHUNK_BYTES):
                if size < SNIFF_BYTES:  # a binary file shows itself at once
                    text.decode(chunk[: SNIFF_BYTES - size])
                size += len(chunk)
                out.write(chunk)
    except UnicodeDecodeError as exc:
        (folder / name).unlink()
        raise InvalidInputError(not_utf8("the upload", exc), field="file") from exc
    if size == 0:
        (folder / name).unlink()
        raise InvalidInputError("the uploaded file is empty", field="file")
    log.info("upload saved bytes=%d limit=%d", size, limit_bytes)
    return f"{UPLOADS}/{name}"


def not_utf8(what: str, error: UnicodeDecodeError) -> str:
    """Why a binary file cannot be scored, in the words of its first bad byte."""
    byte = bytes(error.object[error.start : error.start + 1]).hex()
    return (
        f"{what} is not a UTF-8 CSV (it holds the byte 0x{byte}, which is not UTF-8 "
        "text); save it as CSV with UTF-8 encoding"
    )


def output_path(settings: Settings, job_id: int) -> Path:
    return Path(settings.data_dir) / OUTPUTS / f"job-{job_id}.csv"


def run_batch_score(
    session_factory: sessionmaker[Session],
    settings: Settings,
    job: Job,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Score the job's CSV with the champion; write the output CSV atomically.

    Raises
    ------
    UnprocessableDataError
        The file lacks a feature column, uses a reserved column name, or is not CSV.
    """
    source = Path(settings.data_dir) / job.params["source"]
    settings = settings.for_model(job.model or settings.default_model)
    with session_scope(session_factory) as session:
        version = registry.get_champion(session, settings).model_version
        session.expunge(version)
    remembered = _remembered_runtime(version)
    candidates = _batch_scorers(settings, version, remembered)
    scorer: Scorer | None = None
    schema = registry.input_schema(version)
    total = _estimate_rows(source)
    progress(2, f"scoring about {total} rows with version {version.version}")
    target = output_path(settings, job.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    counts = {"rows": 0, "scored": 0, "invalid": 0}
    try:
        writer: pa_csv.CSVWriter | None = None
        columns: pa.Schema | None = None
        try:
            chunks = _chunks(source, settings.score_chunk_rows, schema, total)
            for index, chunk in enumerate(chunks):
                if index == 0:
                    _check_columns(chunk, schema)
                if scorer is None:
                    scored, scorer, rates = _score_choosing(chunk, schema, candidates,
                                                            version)  # fmt: skip
                    if rates:
                        _remember(session_factory, version.id, scorer.runtime, rates)
                    progress(2, f"scoring with {scorer.runtime}"
                                f"{_why(scorer, remembered, rates)}")  # fmt: skip
                else:
                    scored = _score_chunk(chunk, schema, scorer, version)
                if writer is None:  # the first chunk fixes the columns and types
                    columns = scored.schema
                    writer = pa_csv.CSVWriter(
                        str(partial), columns, write_options=_write_options(columns)
                    )
                writer.write_table(scored.cast(columns))
                counts["rows"] += len(chunk)
                counts["invalid"] += _invalid(scored)
                done = min(counts["rows"] / max(total, 1), 1.0)
                progress(2 + int(96 * done), f"scored {counts['rows']} rows")
        finally:
            if writer is not None:
                writer.close()
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    counts["scored"] = counts["rows"] - counts["invalid"]
    return {
        **counts,
        "model_version": version.version,
        "output": str(target.relative_to(Path(settings.data_dir))),
        "message": f"scored {counts['scored']} rows, {counts['invalid']} invalid, "
        f"with version {version.version}",
    }


def _batch_scorers(
    settings: Settings, version: ModelVersion, only: str | None
) -> list[Scorer]:
    """The version's batch scorers, kept for this worker's next jobs of the same
    version: reading and verifying its artifacts and starting an ONNX Runtime session
    took about a tenth of a 100,000-row forest job. The last `KEPT_VERSIONS` kept
    (a worker's memory holds a few models, not every version it ever scored); the
    artifacts are immutable, named by their checksums."""
    key = (settings.artifact_dir, version.id, version.sha256, version.onnx_sha256,
           settings.inference_runtime, only)  # fmt: skip
    with _KEPT_LOCK:
        found = _KEPT.get(key)
        if found is None:
            found = _KEPT[key] = registry.batch_scorers(settings, version, only=only)
            while len(_KEPT) > KEPT_VERSIONS:
                _KEPT.popitem(last=False)
        _KEPT.move_to_end(key)
        return found


def _write_options(columns: pa.Schema) -> pa_csv.WriteOptions:
    """Text values quoted (Arrow's rule); a plain header unless a name needs it."""
    plain = all(HEADER_SAFE.match(name) for name in columns.names)
    return pa_csv.WriteOptions(quoting_header="none" if plain else "needed")


def _estimate_rows(path: Path, sample_bytes: int = 1 << 16) -> int:
    """Rows of a CSV estimated from its size and its first lines (for progress)."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        sample = stream.read(sample_bytes)
    lines = sample.count(b"\n")
    if lines <= 1 or len(sample) == size:
        return max(lines - 1, 0) if len(sample) == size else 1
    return int(size / (len(sample) / lines)) - 1


def _chunks(path: Path, rows: int, schema: list[FeatureSpec], estimated: int) -> Any:
    """Chunks of the CSV as frames: numeric features as numbers (a column with a bad
    cell comes back as text and is checked cell by cell), everything else as text.

    A file of about one chunk is read by Arrow's reader on every core; one that Arrow
    cannot type as asked (a bad number, a short row, a header pandas would rename)
    and every larger file go through pandas' chunked reader, which keeps memory flat
    and leaves bad cells to the per-row checks. Both read the same texts as missing.
    `estimated` is the file's rows as `_estimate_rows` gave them.
    """
    numeric = {spec.name for spec in schema if spec.type == "number"}
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            header = next(csv.reader(stream), [])
        if 0 < estimated <= rows * ONE_CHUNK_SLACK:
            table = _read_whole(path, header, numeric)
            if table is not None:  # the estimate may fall short: chunks stay chunks
                for start in range(0, table.num_rows, rows):
                    yield table.slice(start, rows).to_pandas()
                return
        text = {name: str for name in header if name not in numeric}
        yield from pd.read_csv(path, chunksize=rows, dtype=text, keep_default_na=False,
                               na_values=MISSING_TEXTS)  # fmt: skip
    except UnicodeDecodeError as exc:
        raise UnprocessableDataError(not_utf8("the file", exc)) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise UnprocessableDataError(f"the file is not a readable CSV: {exc}") from exc


def _read_whole(path: Path, header: list[str], numeric: set[str]) -> pa.Table | None:
    """The whole file typed by Arrow's multithreaded reader, or None where it cannot
    be read so (then pandas reads it, bad cells and all)."""
    if len(set(header)) != len(header) or not all(header) or header[0][:1] == "\ufeff":
        return None
    types = {name: pa.float64() if name in numeric else pa.string() for name in header}
    try:
        options = pa_csv.ConvertOptions(column_types=types, null_values=MISSING_TEXTS,
                                        strings_can_be_null=True)  # fmt: skip
        table = pa_csv.read_csv(path, convert_options=options)
    except pa.ArrowException as exc:
        log.info("reading %s value by value: %s", path.name, exc)
        return None
    return table if table.num_rows else None


def _check_columns(chunk: pd.DataFrame, schema: list[FeatureSpec]) -> None:
    missing = [spec.name for spec in schema if spec.name not in chunk.columns]
    reserved = [name for name in chunk.columns if name in RESERVED or
                str(name).startswith("probability_")]  # fmt: skip
    problems = [{"code": "missing_feature", "column": name} for name in missing]
    problems += [{"code": "reserved_column", "column": name} for name in reserved]
    if problems:
        found = [f"missing features: {', '.join(missing)}"] if missing else []
        found += [f"reserved column names: {', '.join(reserved)}"] if reserved else []
        raise UnprocessableDataError(
            f"cannot score this file ({'; '.join(found)})", problems=problems
        )


def _remembered_runtime(version: ModelVersion) -> str | None:
    """The runtime an earlier job of `version` measured faster on this many cores."""
    found = version.batch_runtime or {}
    return found.get("runtime") if found.get("cores") == os.cpu_count() else None


def _remember(
    session_factory: sessionmaker[Session], version_id: int, runtime: str,
    rates: dict[str, float],
) -> None:  # fmt: skip
    """Keep what this job measured, for the version's later jobs (best effort: a
    job that cannot record it still scores)."""
    measured = {"runtime": runtime, "cores": os.cpu_count(),
                "rows_per_second": {k: round(v) for k, v in rates.items()},
                "measured_at": utcnow().isoformat()}  # fmt: skip
    try:
        with session_scope(session_factory) as session:
            session.execute(update(ModelVersion)
                            .where(ModelVersion.id == version_id)
                            .values(batch_runtime=measured))  # fmt: skip
    except SQLAlchemyError:
        log.warning("could not record the batch runtime of version id %d",
                    version_id, exc_info=True)  # fmt: skip


def _why(scorer: Scorer, remembered: str | None, rates: dict[str, float]) -> str:
    if rates:
        return (
            " (the faster here: "
            + ", ".join(f"{name} {rate:,.0f} rows/s" for name, rate in rates.items())
            + ")"
        )
    if remembered == scorer.runtime:
        return " (measured the faster on an earlier job)"
    return ""


def _score_choosing(
    chunk: pd.DataFrame, schema: list[FeatureSpec], scorers: list[Scorer],
    version: ModelVersion,
) -> tuple[pa.Table, Scorer, dict[str, float]]:  # fmt: skip
    """Score the first chunk and choose the runtime for the rest: each candidate
    scores its own `TIMING_ROWS` rows of it (answers kept, nothing scored twice), the
    fastest scores the remainder. Compiled trees win per call, scikit-learn's forest
    on every core can win per row: the batch path measures instead of assuming.
    Returns the rows per second measured (none when there was no choice)."""
    # the same output columns whichever scores a piece
    scorers = [s for s in scorers
               if s.gives_probabilities == scorers[0].gives_probabilities]  # fmt: skip
    each = min(TIMING_ROWS, len(chunk) // len(scorers))
    if len(scorers) == 1 or each < MIN_TIMING_ROWS:
        return _score_chunk(chunk, schema, scorers[0], version), scorers[0], {}
    parts, timings, done = [], [], 0
    for scorer in scorers:
        piece = chunk.iloc[done : done + each]
        try:
            features, errors = _model_frame(piece.head(10), schema)
            scorer.score_frame(features[errors == ""])  # lazy set-up, not timed
            started = time.perf_counter()
            parts.append(_score_chunk(piece, schema, scorer, version))
        except Exception:  # the next candidate scores these rows
            log.warning("batch scoring with %s failed", scorer.runtime, exc_info=True)
            continue
        timings.append((time.perf_counter() - started, scorer))
        done += each
    if not timings:  # every candidate failed: the first says why
        return _score_chunk(chunk, schema, scorers[0], version), scorers[0], {}
    best = min(timings, key=lambda pair: pair[0])[1]
    times = ", ".join(f"{s.runtime} {t * 1000:.0f} ms" for t, s in timings)
    log.info("batch scoring with %s (%d rows each: %s)", best.runtime, each, times)
    rest = chunk.iloc[done:]
    if len(rest):
        parts.append(_score_chunk(rest, schema, best, version))
    rates = {s.runtime: each / seconds for seconds, s in timings}
    return pa.concat_tables(parts, promote_options="permissive"), best, rates


def _invalid(scored: pa.Table) -> int:
    """Rows of an output chunk with an error text."""
    return int(pc.sum(pc.not_equal(scored.column("error"), "")).as_py() or 0)


def _score_chunk(
    chunk: pd.DataFrame, schema: list[FeatureSpec], scorer: Scorer,
    version: ModelVersion,
) -> pa.Table:  # fmt: skip
    """The chunk's output rows as an Arrow table, built from the scores' arrays as
    they are (a pandas frame in between turned each text column into Python
    strings and back: about 30 ms of a 100,000-row chunk)."""
    features, errors = _model_frame(chunk, schema)
    valid = errors == ""
    every = bool(valid.all())
    rows = len(chunk)
    used = {spec.name for spec in schema}
    # passed through as read (text stays in Arrow's buffers: no Python str per cell)
    out = {name: pa.array(chunk[name].array, from_pandas=True)
           for name in chunk.columns if name not in used}  # fmt: skip
    selected = features if every else features[valid]
    scores = scorer.score_frame(selected) if valid.any() else None
    if version.task == "regression":  # one predicted value
        out["prediction"] = _numbers(None if scores is None else scores.predictions,
                                     valid, rows)  # fmt: skip
    else:
        out["prediction"] = _class_texts(scores, valid, rows)
        if scorer.gives_probabilities:
            found = None if scores is None else scores.probabilities
            columns = len(version.classes)
            probabilities = np.full((rows, columns), np.nan)
            if found is not None:
                probabilities[valid] = found
            out["confidence"] = pa.array(probabilities.max(axis=1), from_pandas=True)
            for index, name in enumerate(version.classes):
                out[f"probability_{name}"] = pa.array(probabilities[:, index],
                                                      from_pandas=True)  # fmt: skip
    out["error"] = _repeated("", rows) if every else pa.array(errors, pa.string())
    out["model_version"] = pa.array(np.full(rows, version.version, dtype=np.int64))
    return pa.table(out)


def _numbers(values: np.ndarray | None, valid: np.ndarray, rows: int) -> pa.Array:
    """Predicted values, missing (an empty cell) on invalid rows."""
    if values is not None and valid.all():
        return pa.array(np.asarray(values, dtype=float), from_pandas=True)
    column = np.full(rows, np.nan)
    if values is not None:
        column[valid] = values
    return pa.array(column, from_pandas=True)


def _class_texts(scores: Scores | None, valid: np.ndarray, rows: int) -> pa.Array:
    """Predicted classes as text, '' on invalid rows: each class's text taken by
    position where the scores say it (a Python str() per row cost about 9 ms of a
    100,000-row chunk whose compiled forest took 190), else converted per row."""
    if scores is None:
        return _repeated("", rows)
    if scores.indices is None or scores.classes is None:
        texts = np.full(rows, "", dtype=object)
        texts[valid] = np.asarray(scores.predictions).astype(str)
        return pa.array(texts, pa.string())
    names = pa.array([str(c) for c in scores.classes] + [""], pa.string())
    if valid.all():
        return names.take(scores.indices)
    positions = np.full(rows, len(scores.classes), dtype=np.int64)
    positions[valid] = scores.indices
    return names.take(positions)


def _repeated(text: str, rows: int) -> pa.Array:
    return pa.array([text], pa.string()).take(np.zeros(rows, dtype=np.int32))


def _model_frame(
    chunk: pd.DataFrame, schema: list[FeatureSpec]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Model dtypes for every row, and an error text per row ('' when valid).

    Columns pandas already parsed as numbers skip the per-cell work.
    """
    messages: list[tuple[np.ndarray, str]] = []
    data: dict[str, Any] = {}
    for spec in schema:
        raw = chunk[spec.name]
        if spec.type == "category":
            values = raw.to_numpy(dtype=object)
            data[spec.name] = np.where(pd.isna(values), np.nan, values)
            continue
        if pd.api.types.is_numeric_dtype(raw):
            numbers = raw.to_numpy(dtype="float64")
        else:
            parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
            messages.append(
                ((parsed.isna() & raw.notna()).to_numpy(), f"{spec.name}: not a number")
            )
            numbers = parsed.to_numpy()
        infinite = np.isinf(numbers)
        too_large = np.abs(numbers) > largest_plausible(spec)
        messages.append((infinite, f"{spec.name}: not finite"))
        messages.append((too_large & ~infinite, f"{spec.name}: too large"))
        bad = infinite | too_large
        data[spec.name] = np.where(bad, np.nan, numbers) if bad.any() else numbers
    errors = np.full(len(chunk), "", dtype=object)
    for mask, text in messages:
        if mask.any():
            errors[mask] = np.where(
                errors[mask] == "", text, errors[mask] + "; " + text
            )
    return pd.DataFrame(data), errors


def get_result_file(settings: Settings, job: Job) -> Path:
    """The output CSV of a finished batch-scoring job.

    Raises
    ------
    NotFoundError
        Not a scoring job, not finished yet, or the file was removed after retention.
    ConflictError
        The job failed or was cancelled: there is no result to serve.
    """
    if job.kind != "batch_score":
        raise NotFoundError(f"job {job.id} is a {job.kind} job and has no result file")
    if job.state in ("failed", "cancelled"):
        raise ConflictError(
            f"job {job.id} {job.state}; it has no result", job_id=job.id
        )
    if job.state != "succeeded":
        raise NotFoundError(f"job {job.id} is {job.state}; its result is not ready")
    path = output_path(settings, job.id)
    if not path.is_file():
        raise NotFoundError(
            f"the result of job {job.id} was removed after "
            f"{settings.file_retention_hours} hours"
        )
    return path


def remove_old_files(settings: Settings, now: float) -> int:
    """Delete uploads and outputs older than the retention; return how many."""
    cutoff = now - settings.file_retention_hours * 3600
    removed = 0
    for folder in (UPLOADS, OUTPUTS):
        directory = Path(settings.data_dir) / folder
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
    log.info("removed old files count=%d", removed)
    return removed
