"""Which arm a request goes to: sticky by routing key, so one customer sees one
version for the whole rollout; a request without a key is placed at random."""

from __future__ import annotations

import hashlib
import secrets

_SCALE = float(2**64)


def position(rollout_id: int, routing_key: str | None) -> float:
    """Where the key falls in [0, 1) for this rollout. The rollout's id is mixed in,
    so a key in the challenger's share of one rollout is not in it for every one."""
    if routing_key is None:
        return secrets.randbits(64) / _SCALE
    digest = hashlib.blake2b(
        f"{rollout_id}:{routing_key}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_challenger(rollout_id: int, share: float, routing_key: str | None) -> bool:
    """Whether this request belongs to the challenger's `share`."""
    return position(rollout_id, routing_key) < share
