"""Pure account rules (no I/O): what to do with a presented refresh token, how a one-time
code attempt is judged, and what of a client's address a session list may show.

The I/O around them lives in `pocho_rt.auth.refresh` and `pocho_rt.auth.recovery`; these
functions take plain facts and return a decision, so every branch is unit-tested.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

# ---------------------------------------------------------------- refresh tokens


class Refresh(Enum):
    ROTATE = "rotate"  # live token: mark it used, issue its successor
    REPLAY = "replay"  # a retry inside the grace: answer the same successor pair again
    REVOKE = "revoke"  # reuse: the family dies (leaked token or a client racing itself)
    DEAD = "dead"  # unknown, expired or revoked: 401, nothing changes
    DISABLED = "disabled"  # the account is disabled: 403, nothing changes


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """What the database says about a presented refresh token (None fields: not applicable)."""

    revoked: bool
    expired: bool
    disabled: bool
    used_at: datetime | None  # when it was rotated
    family_id: str
    successor_live: bool  # its successor exists and is itself still unused and unrevoked


def refresh_verdict(
    token: PresentedToken | None,
    *,
    now: datetime,
    grace_seconds: float,
    claimed_sid: str | None,
) -> Refresh:
    """Reuse detection with a grace for patchy networks.

    A token presented again within `grace_seconds` of its rotation gets the same successor
    pair (REPLAY) only when the request names the same session (`claimed_sid` equals the
    family) and the successor has not been rotated in turn; every other reuse revokes.
    """
    if token is None or token.revoked or token.expired:
        return Refresh.DEAD
    if token.used_at is None:
        return Refresh.DISABLED if token.disabled else Refresh.ROTATE
    within = (now - token.used_at).total_seconds() <= grace_seconds
    if within and token.successor_live and claimed_sid == token.family_id and grace_seconds > 0:
        return Refresh.DISABLED if token.disabled else Refresh.REPLAY
    return Refresh.REVOKE


# ---------------------------------------------------------------- one-time codes

CODE_TTL_SECONDS = 10 * 60
CODE_MAX_ATTEMPTS = 5


class Code(Enum):
    ACCEPT = "accept"  # right code: consume it and apply the change
    WRONG = "wrong"  # count the attempt
    BURN = "burn"  # the attempt that spends the last guess: consume the code
    NONE = "none"  # no usable code (none, consumed, expired or burnt): nothing to count


@dataclass(frozen=True, slots=True)
class PendingCode:
    attempts: int
    expired: bool


def code_verdict(code: PendingCode | None, *, matches: bool) -> Code:
    """Judge one attempt at a single-use code: 10 minutes, at most 5 wrong guesses."""
    if code is None or code.expired or code.attempts >= CODE_MAX_ATTEMPTS:
        return Code.NONE
    if matches:
        return Code.ACCEPT
    return Code.BURN if code.attempts + 1 >= CODE_MAX_ATTEMPTS else Code.WRONG


# ---------------------------------------------------------------- client addresses


def ip_prefix(address: str | None) -> str | None:
    """The network a session came from, never the address: /24 for IPv4, /48 for IPv6.

    Enough for a person to recognise "that was me at home" in a session list, not enough
    to locate them. None when the address is not an IP (unix socket, unknown)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
