"""Account rules without I/O: the refresh grace decision, one-time code attempts, the network
prefix a session list shows, and the derived successor tokens the grace re-issues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from pocho_rt.auth.rules import (
    CODE_MAX_ATTEMPTS,
    Code,
    PendingCode,
    PresentedToken,
    Refresh,
    code_verdict,
    ip_prefix,
    refresh_verdict,
)
from pocho_rt.auth.tokens import TokenService, successor_jti, successor_refresh_token

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SID = "6a0b8f3e-1111-4c4c-8d8d-000000000001"


def _token(**over: object) -> PresentedToken:
    fields: dict[str, object] = {
        "revoked": False,
        "expired": False,
        "disabled": False,
        "used_at": None,
        "family_id": SID,
        "successor_live": False,
    }
    fields.update(over)
    return PresentedToken(**fields)  # type: ignore[arg-type]


def _verdict(token: PresentedToken | None, *, ago: float = 0.0, sid: str | None = SID, grace: float = 30.0) -> Refresh:
    """The verdict `ago` seconds after NOW (the tokens here were rotated at NOW)."""
    return refresh_verdict(token, now=NOW + timedelta(seconds=ago), grace_seconds=grace, claimed_sid=sid)


def test_live_token_rotates_and_dead_ones_are_dead() -> None:
    assert _verdict(_token()) is Refresh.ROTATE
    assert _verdict(None) is Refresh.DEAD
    assert _verdict(_token(revoked=True)) is Refresh.DEAD
    assert _verdict(_token(expired=True)) is Refresh.DEAD
    assert _verdict(_token(revoked=True, used_at=NOW, successor_live=True)) is Refresh.DEAD
    assert _verdict(_token(disabled=True)) is Refresh.DISABLED


def test_retry_within_grace_from_the_same_session_replays() -> None:
    used = _token(used_at=NOW, successor_live=True)
    assert _verdict(used, ago=0) is Refresh.REPLAY
    assert _verdict(used, ago=30) is Refresh.REPLAY  # the edge of the grace is inside it
    assert _verdict(_token(used_at=NOW, successor_live=True, disabled=True)) is Refresh.DISABLED


@pytest.mark.parametrize(
    ("token", "ago", "sid", "grace"),
    [
        (_token(used_at=NOW, successor_live=True), 30.001, SID, 30.0),  # after the grace
        (_token(used_at=NOW, successor_live=True), 1, None, 30.0),  # no session named
        (_token(used_at=NOW, successor_live=True), 1, "another-session", 30.0),  # another session
        (_token(used_at=NOW, successor_live=False), 1, SID, 30.0),  # an older token: successor rotated too
        (_token(used_at=NOW, successor_live=True), 0, SID, 0.0),  # grace switched off
    ],
)
def test_every_other_reuse_revokes(token: PresentedToken, ago: float, sid: str | None, grace: float) -> None:
    assert _verdict(token, ago=ago, sid=sid, grace=grace) is Refresh.REVOKE


def test_code_attempts() -> None:
    assert code_verdict(PendingCode(0, False), matches=True) is Code.ACCEPT
    assert code_verdict(PendingCode(0, False), matches=False) is Code.WRONG
    assert code_verdict(PendingCode(CODE_MAX_ATTEMPTS - 2, False), matches=False) is Code.WRONG
    assert code_verdict(PendingCode(CODE_MAX_ATTEMPTS - 1, False), matches=False) is Code.BURN
    assert code_verdict(PendingCode(CODE_MAX_ATTEMPTS - 1, False), matches=True) is Code.ACCEPT
    assert code_verdict(PendingCode(CODE_MAX_ATTEMPTS, False), matches=True) is Code.NONE
    assert code_verdict(PendingCode(0, True), matches=True) is Code.NONE  # expired
    assert code_verdict(None, matches=False) is Code.NONE


def test_ip_prefix_hides_the_host() -> None:
    assert ip_prefix("203.0.113.77") == "203.0.113.0/24"
    assert ip_prefix("::ffff:198.51.100.9") == "198.51.100.0/24"
    assert ip_prefix("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert ip_prefix("127.0.0.1") == "127.0.0.0/24"
    assert ip_prefix("unknown") is None
    assert ip_prefix(None) is None


def test_successor_tokens_are_derived_and_unguessable_without_the_secret() -> None:
    secret = "unit-test-secret-that-is-long-enough-0123456789"
    a = successor_refresh_token(secret, "presented")
    assert a == successor_refresh_token(secret, "presented")
    assert a != successor_refresh_token(secret, "presented2")
    assert a != successor_refresh_token(secret + "x", "presented")
    assert len(a) == 43  # as long as a fresh token_urlsafe(32)
    assert successor_jti(secret, "presented") != successor_jti(secret, "other")
    tokens = TokenService(secret, 900)
    jti = successor_jti(secret, "presented")
    first, _ = tokens.issue("u1", "CUSTOMER", SID, issued_at=1_800_000_000, jti=jti)
    again, _ = tokens.issue("u1", "CUSTOMER", SID, issued_at=1_800_000_000, jti=jti)
    assert first == again
    claims = jwt.decode(first, options={"verify_signature": False})
    assert (claims["iat"], claims["exp"], claims["jti"]) == (1_800_000_000, 1_800_000_900, jti)
