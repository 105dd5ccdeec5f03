"""Alert delivery to a webhook: a JSON body signed with HMAC-SHA256 over the
timestamp and the body, every attempt stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.config import Settings
from common.errors import NotFoundError
from common.monitoring.alerts import alert_out
from common.storage.tables import Alert, AlertDelivery

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def deliver_alert(
    session: Session, settings: Settings, alert_id: int, event: str
) -> bool:
    """POST one alert event; store the attempt; True when the receiver took it (2xx).

    Raises
    ------
    NotFoundError
        Unknown alert.
    """
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found", alert_id=alert_id)
    attempt = 1 + (session.scalar(
        select(func.count()).select_from(AlertDelivery)
        .where(AlertDelivery.alert_id == alert_id, AlertDelivery.channel == "webhook")
    ) or 0)  # fmt: skip
    body = json.dumps({"event": event, "alert": alert_out(alert, [])},
                      sort_keys=True).encode()  # fmt: skip
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        settings.alert_webhook_url, data=body, method="POST",
        headers={"Content-Type": "application/json", "X-ModelOps-Event": event,
                 "X-ModelOps-Timestamp": timestamp,
                 "X-ModelOps-Signature": sign(settings.alert_webhook_secret, timestamp,
                                              body)},
    )  # fmt: skip
    status_code: int | None = None
    error: str | None = None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status_code = response.status
    except urllib.error.HTTPError as exc:
        status_code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        error = str(getattr(exc, "reason", exc))[:500]
    delivered = status_code is not None and 200 <= status_code < 300
    session.add(AlertDelivery(
        alert_id=alert_id, channel="webhook", attempt=attempt,
        status="delivered" if delivered else "failed", status_code=status_code,
        error=None if delivered else error,
    ))  # fmt: skip
    session.flush()
    log.info("webhook alert=%d event=%s attempt=%d delivered=%s", alert_id, event,
             attempt, delivered)  # fmt: skip
    return delivered
