"""Prometheus registry of the process and the engine's own metrics (names start `pocho_`)."""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections import Counter as _Tally
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _float_to_go

_le: Callable[[float], str] = _float_to_go  # untyped upstream: the `le` label text Prometheus expects

REGISTRY = CollectorRegistry(auto_describe=True)

LIVE_ACTORS = Gauge("pocho_actors_live", "Actors in memory by kind", ["kind"], registry=REGISTRY)
MAILBOX_FULL = Counter(
    "pocho_actor_mailbox_full_total", "Messages refused because a mailbox was full", ["kind"], registry=REGISTRY
)


class _LoopHistogramChild:
    """One label's counts: plain integers, no lock (only the event loop's thread writes them,
    and the scrape runs on that loop too)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class LoopHistogram(Collector):
    """A labelled histogram for per-message hot paths: prometheus_client's takes a lock and
    walks its buckets in Python for every observation (about 2% of the server's time at
    thousands of commands a second); this one counts and sums, and builds the cumulative
    buckets when Prometheus scrapes."""

    def __init__(self, name: str, documentation: str, label: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.label, self.buckets = name, documentation, label, buckets
        self._children: dict[str, _LoopHistogramChild] = {}
        REGISTRY.register(self)

    def labels(self, value: str) -> _LoopHistogramChild:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = _LoopHistogramChild(self.buckets)
        return child

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in sorted(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.buckets, float("inf")), child.counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family.add_metric([value], buckets, child.total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])


HANDLE_SECONDS = LoopHistogram(
    "pocho_actor_handle_seconds",
    "Time an actor spends on one message",
    "kind",
    (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1),
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
