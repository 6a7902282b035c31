"""Pure rules of notification delivery (issue 10): quiet hours, which pushes may wait, and how
a burst for one user collapses into one push. The dispatcher (pocho_rt.notify_service) does
the I/O around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Pushes about an order in progress or a code the user asked for: sent during quiet hours and
# past the per-user cap too.
URGENT_PREFIXES = ("order.", "rider.", "verification.")
_URGENT_KINDS = frozenset({"verify_code", "password_reset", "phone_change", "sla_breach"})
MINUTES_PER_DAY = 24 * 60


def urgent(kind: str) -> bool:
    return kind.startswith(URGENT_PREFIXES) or kind in _URGENT_KINDS


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def quiet_until(now: datetime, start: int, end: int, tz: str) -> datetime | None:
    """When the quiet hours holding `now` end (aware UTC), or None outside them.

    `start`/`end` are minutes after local midnight in `tz`; start > end spans midnight;
    start == end means no quiet hours."""
    if start == end:
        return None
    local = now.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else minute >= start or minute < end
    if not inside:
        return None
    ahead = (end - minute) % MINUTES_PER_DAY
    wake = local.replace(second=0, microsecond=0) + timedelta(minutes=ahead)
    return wake.astimezone(now.tzinfo)


def coalesce(rows: Sequence[tuple[int, str, str]]) -> tuple[dict[tuple[str, str], int], dict[int, int]]:
    """Rows (id, user, kind) of one batch: the newest row per (user, kind) is the one to send;
    returns ({(user, kind): id kept}, {dropped id: id kept}). A burst of counters for one
    vendor becomes one push."""
    keep: dict[tuple[str, str], int] = {}
    for row_id, user, kind in rows:
        key = (user, kind)
        if key not in keep or row_id > keep[key]:
            keep[key] = row_id
    dropped: dict[int, int] = {}
    for row_id, user, kind in rows:
        kept = keep[(user, kind)]
        if row_id != kept:
            dropped[row_id] = kept
    return keep, dropped
