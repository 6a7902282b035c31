"""The order's deadlines: unpaid cancel, offer timeout, SLA checks (each once), and the one
deadline the actor arms and the sweeper stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import order_rules as rules
from engine import orders as o
from engine.assignment import AssignmentWithdrawn
from engine.orders import Order, Policy
from engine.state import evolve
from tests.unit.order_support import (
    CUSTOMER,
    RIDER,
    VENDOR_USER,
    assigned,
    at,
    at_status,
    new_order,
    offered,
    paid,
    rider,
    status_events,
    tells,
    vendor,
)

POLICY = Policy()


def ops_kinds(events: list[o.Event]) -> list[str]:
    return [e.payload["sla"] for e in events if e.kind == o.OPS]


def test_unpaid_order_is_canceled_by_the_timer_at_its_deadline() -> None:
    order = new_order()
    deadline = o.unpaid_deadline(order, POLICY)
    assert deadline == order.created_at + timedelta(minutes=15) == o.next_deadline(order, POLICY)
    assert rules.due(order, deadline - timedelta(seconds=1), POLICY) == (order, [])
    new, events = rules.due(order, deadline, POLICY)
    assert new.status == o.CANCELED
    body = status_events(events)[0].payload["event"]
    assert body["by"] == "system" and body["reason"] == "unpaid"
    assert o.next_deadline(new, POLICY) is None
    assert rules.due(new, deadline + timedelta(hours=1), POLICY) == (new, [])  # idempotent


def test_an_unanswered_offer_expires_and_the_rider_is_skipped() -> None:
    order = offered(paid(new_order()))
    expires = order.dispatch.offer_expires_at
    assert expires is not None and o.next_deadline(order, POLICY) == expires
    new, events = rules.due(order, expires, POLICY)
    assert new.dispatch.offered_rider_id is None and new.dispatch.skipped == (RIDER,)
    assert new.dispatch.retry_at == expires  # the next search runs at once
    assert [e.kind for e in events] == [o.ASSIGNMENT_REVOKED, o.TELL]
    assert tells(events) == [(RIDER, AssignmentWithdrawn(order.id))]


def test_each_sla_fires_once_when_its_status_still_holds() -> None:
    order = paid(new_order(), now=at(0))  # prep 20 min promised
    deadlines = o.sla_deadlines(order, POLICY)
    assert deadlines == {
        o.SLA_PREP_START: at(10),
        o.SLA_READY: at(30),  # 20 promised + 10 grace
        o.SLA_UNASSIGNED: at(10),
    }
    order = rules.offer_next(order, [], at(0), Policy(dispatch_retry=timedelta(hours=1)))[0]  # nobody around
    new, events = rules.due(order, at(10), POLICY)
    assert sorted(ops_kinds(events)) == [o.SLA_PREP_START, o.SLA_UNASSIGNED]
    assert new.sla_fired == {o.SLA_PREP_START, o.SLA_UNASSIGNED} and new.seq == order.seq  # not order events
    assert rules.due(new, at(11), POLICY) == (new, [])  # once
    new = vendor(new, o.PREPARING, now=at(12))
    assert o.next_deadline(new, POLICY) == at(30)
    late, events = rules.due(new, at(30), POLICY)
    assert ops_kinds(events) == [o.SLA_READY]
    assert rules.due(late, at(45), POLICY) == (late, [])


def test_sla_checks_do_not_fire_once_the_order_moved_on() -> None:
    order = vendor(vendor(assigned(paid(new_order(), now=at(0))), o.PREPARING, now=at(1)), o.READY, now=at(2))
    assert o.sla_deadlines(order, POLICY) == {}
    assert rules.due(order, at(500), POLICY) == (order, [])


def test_delivery_late_is_measured_from_pickup_by_trip_estimate_and_margin() -> None:
    order = at_status(o.READY)
    picked = rider(order, o.PICKED_UP, now=at(40))
    trip = o.trip_minutes(picked)
    assert picked.eta_minutes == trip and 5 < trip < 20
    due_at = at(40) + timedelta(minutes=trip + 15)
    assert o.sla_deadlines(picked, POLICY) == {o.SLA_DELIVERY: due_at}
    out = rider(picked, o.OUT_FOR_DELIVERY, now=at(43))
    assert out.eta_minutes == trip - 3
    new, events = rules.due(out, due_at, POLICY)
    [ops] = [e for e in events if e.kind == o.OPS]
    assert ops.payload["notifyUserId"] == CUSTOMER and ops.payload["kind"] == "sla:delivery_late"
    assert o.next_deadline(new, POLICY) is None


def test_sla_scale_shortens_every_sla_deadline_but_not_the_unpaid_one() -> None:
    fast = Policy(sla_scale=0.01)
    order = paid(new_order(), now=at(0))
    assert o.sla_deadlines(order, fast)[o.SLA_READY] == at(0.3)
    assert o.unpaid_deadline(new_order(), fast) == o.unpaid_deadline(new_order(), POLICY)


@pytest.mark.parametrize(
    ("kind", "notify"),
    [(o.SLA_PREP_START, VENDOR_USER), (o.SLA_READY, VENDOR_USER), (o.SLA_UNASSIGNED, None)],
)
def test_breach_notifications_go_to_who_can_act(kind: str, notify: str | None) -> None:
    order = rules.offer_next(paid(new_order(), now=at(0)), [], at(0), Policy(dispatch_retry=timedelta(hours=1)))[0]
    _, events = rules.due(order, at(60), POLICY)
    [ops] = [e for e in events if e.kind == o.OPS and e.payload["sla"] == kind]
    assert ops.payload["notifyUserId"] == notify and ops.payload["kind"] == f"sla:{kind}"
    assert order.id[:8] in ops.payload["body"]


def test_next_deadline_is_the_earliest_of_sla_offer_and_search() -> None:
    order = paid(new_order(), now=at(0))
    assert o.next_deadline(order, POLICY) == at(0)  # the first search is due at once
    order = offered(order, now=at(0))
    assert o.next_deadline(order, POLICY) == at(0) + POLICY.offer_ttl


def test_a_paid_order_without_a_planned_search_gets_one() -> None:
    """State written before dispatch existed (or by hand): the timer restarts the search."""
    stuck: Order = evolve(paid(new_order(), now=at(0)), dispatch=o.Dispatch())
    assert o.next_deadline(stuck, POLICY) == at(0)
    new, _ = rules.due(stuck, at(1), POLICY)
    assert new.dispatch.retry_at == at(1)
