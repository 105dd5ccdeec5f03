"""A webhook receiver on loopback that checks each event's HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "webhook-fault-secret"


class Receiver(BaseHTTPRequestHandler):
    """Keeps (headers, body, signature ok) of every POST; 204 when signed right."""

    received: list[tuple[dict[str, str], dict[str, Any], bool]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = hmac.new(SECRET.encode(),
                            self.headers["X-ModelOps-Timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()  # fmt: skip
        ok = self.headers["X-ModelOps-Signature"] == f"sha256={expected}"
        Receiver.received.append((dict(self.headers), json.loads(body), ok))
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def receiving(port: int) -> Iterator[list[tuple[dict[str, str], dict[str, Any], bool]]]:
    """Listen on 127.0.0.1:`port` until the block ends; yields what arrives."""
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def webhook_env(port: int) -> dict[str, str]:
    return {
        "MODELOPS_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
        "MODELOPS_ALERT_WEBHOOK_SECRET": SECRET,
    }
