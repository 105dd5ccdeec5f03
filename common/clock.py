"""UTC time. One place, so stored and printed timestamps agree."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Timezone-aware UTC; naive values (SQLite drops the zone) are taken as UTC."""
    if value.tzinfo is UTC:  # already (utcnow's): the log's writer asks per row
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_iso(value: datetime | None) -> str | None:
    """Return ISO-8601 UTC; naive values are taken as UTC."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def from_iso(value: str) -> datetime:
    """Parse ISO-8601 (a trailing Z allowed); naive values are taken as UTC.

    Raises ValueError for text that is not a timestamp."""
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
