"""Which vendors are looking at which open request, for the customer's `presence` event.

A vendor "views" a request from `request:watch` on /vendor until `request:unwatch` or its
socket goes away; several sockets of one vendor count once. Kept in this node's memory
(a vendor's sockets on other nodes are counted by those nodes: cross-node presence comes
with sharding).
"""

from __future__ import annotations

from collections import Counter, defaultdict


class Presence:
    def __init__(self) -> None:
        self._viewers: dict[str, Counter[str]] = defaultdict(Counter)  # request -> vendor -> sockets
        self._by_sid: dict[str, dict[str, str]] = defaultdict(dict)  # sid -> request -> vendor

    def count(self, request_id: str) -> int:
        viewers = self._viewers.get(request_id)
        return len(viewers) if viewers else 0

    def watching(self, sid: str) -> int:
        return len(self._by_sid.get(sid, ()))

    def join(self, sid: str, request_id: str, vendor_id: str) -> bool:
        """Record a view; True when the number of distinct vendors changed."""
        if request_id in self._by_sid[sid]:
            return False
        self._by_sid[sid][request_id] = vendor_id
        viewers = self._viewers[request_id]
        viewers[vendor_id] += 1
        return viewers[vendor_id] == 1

    def leave(self, sid: str, request_id: str) -> bool:
        vendor_id = self._by_sid.get(sid, {}).pop(request_id, None)
        if vendor_id is None:
            return False
        viewers = self._viewers[request_id]
        viewers[vendor_id] -= 1
        changed = viewers[vendor_id] == 0
        if changed:
            del viewers[vendor_id]
        if not viewers:
            del self._viewers[request_id]
        if not self._by_sid.get(sid):
            self._by_sid.pop(sid, None)
        return changed

    def leave_all(self, sid: str) -> list[str]:
        """Forget a socket; the requests whose count changed."""
        return [r for r in list(self._by_sid.get(sid, {})) if self.leave(sid, r)]
