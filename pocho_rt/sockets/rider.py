"""The /rider namespace of PROTOCOL."""

from __future__ import annotations

from pocho_rt.sockets.base import BaseNamespace


class RiderNamespace(BaseNamespace):
    role = "RIDER"
