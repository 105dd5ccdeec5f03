"""Log predictions in tests the way the API's log writer does: the log row, its
minute's rollups, and a label that came first counted when the row lands."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from common.clock import utcnow
from common.monitoring.prediction_log import log_predictions
from common.storage.tables import FeedbackLabel


def logged(session: Session, *, label: str | None = None, **fields: Any) -> str:
    """Log one answered prediction (fields override the defaults); its id."""
    row = {
        "prediction_id": uuid.uuid4().hex, "model": "default",
        "model_version_id": None, "model_version": 1, "features": {},
        "prediction": "1", "confidence": None, "probabilities": None,
        "latency_ms": 1.0, "status_code": 200, "data_quality": None,
        "request_rows": 1, "created_at": utcnow(), **fields,
    }  # fmt: skip
    if label is not None:
        session.add(FeedbackLabel(prediction_id=row["prediction_id"], label=label))
        session.flush()
    log_predictions(session, [row])
    return row["prediction_id"]
