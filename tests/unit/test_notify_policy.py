"""Pure rules of notification delivery (engine.notify_policy) and the money texts of templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.notify_policy import coalesce, quiet_until, urgent
from engine.notify_templates import budget, naira

LAGOS = "Africa/Lagos"  # UTC+1, no daylight saving


@pytest.mark.parametrize(
    ("utc", "start", "end", "wake"),
    [
        ("2026-11-29T22:30", 22 * 60, 7 * 60, "2026-11-30T06:00"),  # 23:30 local, across midnight
        ("2026-11-29T03:10", 22 * 60, 7 * 60, "2026-11-29T06:00"),  # 04:10 local, after midnight
        ("2026-11-29T12:00", 22 * 60, 7 * 60, None),  # 13:00 local: outside
        ("2026-11-29T12:00", 12 * 60, 14 * 60, "2026-11-29T13:00"),  # a daytime window
        ("2026-11-29T13:00", 12 * 60, 14 * 60, None),  # 14:00 local: the end is not inside
        ("2026-11-29T12:00", 9 * 60, 9 * 60, None),  # start == end: none
    ],
)
def test_quiet_hours_end_in_local_time(utc: str, start: int, end: int, wake: str | None) -> None:
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    expected = datetime.fromisoformat(wake).replace(tzinfo=UTC) if wake else None
    assert quiet_until(now, start, end, LAGOS) == expected


def test_a_burst_keeps_the_newest_per_user_and_kind() -> None:
    rows = [
        (1, "u1", "offer.countered"),
        (4, "u1", "offer.countered"),
        (2, "u2", "offer.countered"),
        (3, "u1", "offer.new"),
    ]
    keep, dropped = coalesce(rows)
    assert keep == {("u1", "offer.countered"): 4, ("u2", "offer.countered"): 2, ("u1", "offer.new"): 3}
    assert dropped == {1: 4}


def test_order_and_code_notices_do_not_wait() -> None:
    assert urgent("order.delivered") and urgent("rider.assigned") and urgent("verify_code") and urgent("sla_breach")
    assert not urgent("offer.new") and not urgent("request.nearby") and not urgent("offer.countered")


def test_money_reads_as_naira() -> None:
    assert naira(150_000) == "₦1,500" and naira(150_050) == "₦1,500.50" and naira(0) == "₦0"
    assert budget(200_000, 500_000) == "₦2,000–₦5,000" and budget(100, 100) == "₦1"
