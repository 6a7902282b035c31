"""Prometheus registry of the process and the engine's own metrics (names start `pocho_`)."""

from __future__ import annotations

import weakref
from collections import Counter as _Tally
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

LIVE_ACTORS = Gauge("pocho_actors_live", "Actors in memory by kind", ["kind"], registry=REGISTRY)
MAILBOX_FULL = Counter(
    "pocho_actor_mailbox_full_total", "Messages refused because a mailbox was full", ["kind"], registry=REGISTRY
)
HANDLE_SECONDS = Histogram(
    "pocho_actor_handle_seconds",
    "Time an actor spends on one message",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1),
)
ACTIVATIONS = Counter("pocho_actor_activations_total", "Actor activations (state loaded)", ["kind"], registry=REGISTRY)
PASSIVATIONS = Counter(
    "pocho_actor_passivations_total", "Actors dropped from memory after idling", ["kind"], registry=REGISTRY
)
WRITER_BATCH = Histogram(
    "pocho_writer_batch_size",
    "Submissions per group commit",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
WRITER_COMMIT_SECONDS = Histogram(
    "pocho_writer_commit_seconds",
    "Time to commit one group",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
WRITER_FAILURES = Counter(
    "pocho_writer_failures_total", "Failed group commits by reason", ["reason"], registry=REGISTRY
)
WRITER_REFUSED = Counter(
    "pocho_writer_refused_total", "Submissions refused because the queue was full", registry=REGISTRY
)


class _Mailboxes(Protocol):
    def mailbox_depths(self) -> dict[str, int]: ...


class _Queue(Protocol):
    def queued_rows(self) -> int: ...


SYSTEMS: weakref.WeakSet[Any] = weakref.WeakSet()  # ActorSystems of this process
WRITERS: weakref.WeakSet[Any] = weakref.WeakSet()  # Writers of this process


class _ScrapeTimeGauges(Collector):
    """Depths read when Prometheus scrapes, so the hot path takes no metric lock per message."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("pocho_actor_mailbox_depth", "Messages waiting in mailboxes by kind", labels=["kind"])
        tally: _Tally[str] = _Tally()
        for system in list(SYSTEMS):
            tally.update(system.mailbox_depths())
        for kind, n in sorted(tally.items()):
            depth.add_metric([kind], n)
        yield depth
        yield GaugeMetricFamily(
            "pocho_writer_queue_depth",
            "Rows waiting for the write-behind writer",
            value=sum(w.queued_rows() for w in list(WRITERS)),
        )


REGISTRY.register(_ScrapeTimeGauges())
