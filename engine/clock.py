"""Time on the wire: UTC ISO-8601 with milliseconds and a Z, the one format PROTOCOL uses."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """Naive datetimes are taken as UTC. isoformat is C code: this runs for every field of
    every offer view, so it is on the hot path."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"
