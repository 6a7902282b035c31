"""Time on the wire: UTC ISO-8601 with milliseconds and a Z, the one format PROTOCOL uses."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


_ISO: dict[datetime, str] = {}
_ISO_MAX = 16_384  # distinct instants remembered (cleared when full: a cache, not a leak)


def iso(value: datetime | None) -> str | None:
    """Naive datetimes are taken as UTC. This runs for every time field of every view on the
    hot path, and most of them (created_at, expires_at) are formatted again and again: the
    text of recent instants is remembered (a dict hit costs a tenth of isoformat here)."""
    if value is None:
        return None
    text = _ISO.get(value)
    if text is None:  # every command's own `now` (an offer's updatedAt) is new: keep this cheap
        if value.tzinfo is UTC:
            utc = value
        elif value.tzinfo is None:
            utc = value.replace(tzinfo=UTC)
        elif value.utcoffset():
            utc = value.astimezone(UTC)
        else:
            utc = value
        whole = utc.isoformat()  # ...THH:MM:SS[.ffffff]+00:00; milliseconds truncated, as timespec does
        text = (whole[:23] if utc.microsecond else whole[:19] + ".000") + "Z"
        if len(_ISO) >= _ISO_MAX:
            _ISO.clear()
        _ISO[value] = text
    return text
