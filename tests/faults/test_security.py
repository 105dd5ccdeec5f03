"""Case 10: no way in without the key, no way out of the data directory, no body read
in full past its limit, markup shown as text. (Loopback-only listening is checked
where everything starts: tests/e2e/test_up.py.)"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import API_KEY, AUTH, ROW, http, prepare_home, send

pytestmark = pytest.mark.faults

WRONG = [
    {},  # no key
    {"X-API-Key": "wrong"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {API_KEY}"},  # the right key, not as a bearer token
    {"Authorization": "Bearer wrong", "X-API-Key": API_KEY},  # one right, one wrong
    {"X-API-Key": API_KEY.upper()},
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, redis_url):
    from tests.e2e.conftest import launch_api

    home = tmp_path_factory.mktemp("security")
    api = launch_api(
        prepare_home(home / "home"), redis_url, home,
        MODELOPS_PREDICT_AUTH="true", MODELOPS_MAX_REQUEST_BYTES="20000",
        MODELOPS_UPLOAD_MAX_BYTES="100000",
    )  # fmt: skip
    yield api
    api.stop()


def _mutating_operations(api) -> list[tuple[str, str]]:
    document = http("GET", f"{api.url}/openapi.json")[2]
    return sorted(
        (method.upper(), path.replace("{version}", "1").replace("{job_id}", "1")
         .replace("{alert_id}", "1").replace("{name}", "default"))
        for path, item in document["paths"].items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    )  # fmt: skip


def test_every_mutating_endpoint_refuses_a_missing_or_wrong_key(api, record):
    operations = _mutating_operations(api)
    assert ("POST", "/predict") in operations and (
        "POST",
        "/model/retrain",
    ) in operations
    refused, let_in = 0, []
    for method, path in operations:
        for headers in WRONG:
            status, _, body = http(method, f"{api.url}{path}", {}, headers)
            if status == 401 and body["error"]["code"] == "unauthorized":
                refused += 1
            else:
                let_in.append((method, path, headers, status))
        # With the key the same call gets past the check (whatever it then says).
        assert http(method, f"{api.url}{path}", {}, AUTH)[0] != 401, path
    assert let_in == []
    record("security-auth", mutating_operations=len(operations),
           bad_credentials_per_operation=len(WRONG), refused_with_401=refused,
           let_in=len(let_in))  # fmt: skip


def test_names_and_uploads_cannot_reach_outside_the_data_directory(api, record):
    home = Path(api.settings.home)
    outside = home.parent / f"secret-{uuid.uuid4().hex[:6]}.csv"
    outside.write_text("age\n1\n")
    data = home / "data"
    data.mkdir(exist_ok=True)
    (data / "link.csv").symlink_to(outside)  # a name inside, a file outside
    names = ["../" + outside.name, str(outside), "..", ".", "a/b.csv", "a\\b.csv",
             "link.csv", "x\x00.csv", "%2e%2e%2f" + outside.name]  # fmt: skip
    refused = 0
    for name in names:
        for path in ("/jobs/batch-score", "/model/retrain"):
            status, _, body = http("POST", f"{api.url}{path}", {"dataset": name}, AUTH)
            assert status in (400, 404), (name, path, status, body)
            assert "dataset" in str(body["error"]), body
            refused += 1
    # An upload's own file name is never used as a path.
    boundary = "b" + uuid.uuid4().hex
    evil = f"../../{uuid.uuid4().hex}.csv"
    payload = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{evil}\"\r\nContent-Type: text/csv\r\n\r\n"
        + ",".join(ROW) + "\r\n" + ",".join(str(v) for v in ROW.values())
        + f"\r\n--{boundary}--\r\n"
    ).encode()  # fmt: skip
    form = f"multipart/form-data; boundary={boundary}"
    status, _, body = send("POST", f"{api.url}/jobs/batch-score", payload,
                           {"Content-Type": form, "X-API-Key": API_KEY})  # fmt: skip
    assert status == 202, body
    escaped = [p for p in home.parent.rglob(Path(evil).name)]
    assert escaped == []  # stored under a generated name inside data/uploads
    assert list((data / "uploads").glob("*.csv"))
    assets = ["/dashboard/vendor/..%2f..%2fsetup.cfg", "/docs/assets/..%2fsetup.cfg",
              "/dashboard/static/..%2f..%2fsetup.cfg"]  # fmt: skip
    served = [path for path in assets if http("GET", f"{api.url}{path}")[0] != 404]
    assert served == []
    record("security-paths", names_tried=len(names) * 2, refused=refused,
           uploads_outside_data_dir=len(escaped), asset_paths_tried=len(assets),
           files_served_outside=len(served))  # fmt: skip


def _announce_and_read(api, head: bytes) -> str:
    """Send headers announcing 500 MB and a few bytes of body; return the answer
    (it must come without the rest being sent)."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            assert chunk, "closed without an answer"
            answer += chunk
        top, _, body = answer.partition(b"\r\n\r\n")
        length = int(top.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += connection.recv(65536)
    return (top + b"\r\n\r\n" + body).decode()


def test_oversized_bodies_get_413_before_they_are_read(api, record):
    key = f"X-API-Key: {API_KEY}\r\n".encode()
    requests = [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + key + b'Content-Length: 500000000\r\n\r\n{"features": {',
        b"POST /jobs/batch-score HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\n"
        + key + b"Content-Length: 500000000\r\n\r\n--zz\r\n",
    ]  # fmt: skip
    answers = [_announce_and_read(api, head) for head in requests]
    for answer in answers:
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert '"code":"request_entity_too_large"' in answer.replace(" ", "")
    sent = max(len(head.partition(b"\r\n\r\n")[2]) for head in requests)
    record("security-413", bytes_announced=500_000_000, body_bytes_sent=sent,
           answered_413=sum(a.startswith("HTTP/1.1 413") for a in answers))  # fmt: skip


def test_the_dashboard_forbids_inline_script_and_shows_markup_as_text(api, record):
    import urllib.request

    with urllib.request.urlopen(f"{api.url}/") as answer:
        policy = answer.headers["Content-Security-Policy"]
        page = answer.read().decode()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page  # every script is a file; data goes in as text
    scripts = Path(__file__).resolve().parents[2] / "dashboard/static/js"
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write")
    offenders = [p.name for p in scripts.glob("*.js")
                 if any(sink in p.read_text() for sink in sinks)]  # fmt: skip
    assert offenders == []
    record("security-dashboard", scripts_checked=len(list(scripts.glob("*.js"))),
           html_sinks_in_js=len(offenders))  # fmt: skip


def test_servers_listen_on_loopback_by_default():
    from common.config import Settings

    settings = Settings(home=os.devnull)
    assert settings.api_host == "127.0.0.1" and settings.flower_host == "127.0.0.1"
