"""Reachability of the Redis broker, for readiness checks."""

from __future__ import annotations

import redis

from common.errors import DependencyError


def check_broker(url: str, timeout_seconds: float = 1.0) -> None:
    """PING the broker.

    Raises
    ------
    DependencyError
        When no URL is configured or Redis does not answer within the timeout.
    """
    if not url:
        raise DependencyError("no broker configured (MODELOPS_REDIS_URL is empty)")
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise DependencyError("broker unreachable", reason=str(exc)) from exc
    finally:
        client.close()
