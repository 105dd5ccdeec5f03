from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from common.monitoring import webhooks
from common.storage.db import session_scope
from common.storage.tables import Alert, AlertDelivery
from services.launcher import free_port


@pytest.fixture
def receiver():
    """A local webhook receiver: answers with the queued status codes, records calls."""
    received, statuses = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers, body))  # case-insensitive lookups
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received, statuses
    server.shutdown()
    server.server_close()


def _alert(session):
    alert = Alert(
        rule="accuracy-floor",
        subject="model",
        severity="critical",
        message="accuracy of model is 0.5",
        value=0.5,
        threshold=0.7,
    )
    session.add(alert)
    session.flush()
    return alert.id


def test_delivery_is_signed_and_every_attempt_is_stored(
    session_factory, db_settings, receiver
):
    url, received, statuses = receiver
    settings = db_settings.with_overrides(
        alert_webhook_url=url, alert_webhook_secret="s3cret"
    )
    statuses.append(500)
    with session_scope(session_factory) as session:
        alert_id = _alert(session)
        assert webhooks.deliver_alert(session, settings, alert_id, "opened") is False
        assert webhooks.deliver_alert(session, settings, alert_id, "opened") is True
        attempts = session.query(AlertDelivery).order_by(AlertDelivery.id).all()
    assert [(a.attempt, a.status, a.status_code) for a in attempts] == [
        (1, "failed", 500),
        (2, "delivered", 200),
    ]
    headers, body = received[-1]
    expected = hmac.new(
        b"s3cret",
        headers["X-ModelOps-Timestamp"].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    assert headers["X-ModelOps-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "opened" and payload["alert"]["rule"] == "accuracy-floor"


def test_an_unreachable_receiver_is_a_stored_failure(session_factory, db_settings):
    settings = db_settings.with_overrides(
        alert_webhook_url=f"http://127.0.0.1:{free_port()}/gone"
    )
    with session_scope(session_factory) as session:
        alert_id = _alert(session)
        assert webhooks.deliver_alert(session, settings, alert_id, "opened") is False
        (attempt,) = session.query(AlertDelivery).all()
    assert attempt.status == "failed" and attempt.status_code is None
    assert attempt.error
