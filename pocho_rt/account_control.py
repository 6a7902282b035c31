"""Ops control of accounts: disable and enable (PROTOCOL "Ops": /admin/users/{id}/disable,
/enable), and ending everything a user has open.

Disabling, in one transaction: the flag with when and why, every refresh family of the user
revoked, an audit row. After commit, on every node at once: the user's access tokens are
voided in Redis (a user-wide cutoff plus each family's `sid`), the user's live sockets get
`session:revoked` {reason: "account_disabled"} and are disconnected (Redis pub/sub, see
`pocho_rt.auth.sessions`), a vendor leaves the geo index (no more `request:new`) with
its live offers withdrawn through the meal-request actors, and a rider goes offline for
dispatch. Login, refresh and connect are
refused from then on (login and refresh read the flag; connect has no token left).

The after-commit part runs again when an already disabled account is disabled again, so a
crash between commit and Redis is mended by repeating the call; the audit row is written
only for a change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.errors import EngineError
from persistence import refresh_tokens
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt.auth.principal import clear_user_revocation, revoke_session, revoke_user
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id
from pocho_rt.metrics import ACCOUNT_EVENTS

log = logging.getLogger("pocho.users")


@dataclass(frozen=True, slots=True)
class Change:
    user: users_db.User  # opened (persistence.pii)
    changed: bool
    offers_withdrawn: int = 0


async def end_user_everywhere(svc: Services, user_id: str, families: list[str], reason: str) -> None:
    """After commit of the families' revocation: void every access token of the user and end
    all of the user's sockets on every node."""
    ttl = svc.settings.jwt_access_ttl
    await revoke_user(svc.redis, user_id, int(time.time()), ttl)
    for family_id in families:
        await revoke_session(svc.redis, family_id, ttl)
    await svc.sessions.end(f"user:{user_id}", reason)


async def stop_matching(svc: Services, user_id: str, role: str) -> int:
    """A disabled or erased account is offered no more work: a vendor leaves the geo index and
    its live offers are withdrawn (returns how many), a rider goes offline for dispatch."""
    if role == "VENDOR":
        return await svc.negotiation.vendor_disabled(user_id)
    if role == "RIDER" and (rider_id := await svc.riders.rider_of(user_id)) is not None:
        try:
            await svc.riders.offline(rider_id)
        except EngineError as exc:  # the rider actor is away: the heartbeat takes it offline
            log.warning("taking a disabled rider offline failed", extra={"code": exc.code})
    return 0


def _kind(admin_id: str | None) -> str:
    return "admin" if admin_id else "admin_key"


async def disable(svc: Services, user_id: str, reason: str, admin_id: str | None) -> Change:
    if admin_id == user_id:
        raise ApiError("conflict", "you cannot disable your own account")
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None:
            raise ApiError("not_found", "user not found")
        changed = not user["disabled"]
        families = await refresh_tokens.revoke_user_families(conn, user_id)
        if changed:
            user = await users_db.set_disabled(
                conn, svc.pii, user_id, disabled=True, at=datetime.now(UTC), reason=reason
            )
            await audit(
                conn,
                "user.disable",
                actor_id=admin_id,
                actor_kind=_kind(admin_id),
                target_kind="user",
                target_id=user_id,
                details={"reason": reason, "sessionsEnded": len(families)},
                request_id=request_id.get(),
            )
    assert user is not None
    await end_user_everywhere(svc, user_id, families, "account_disabled")
    withdrawn = await stop_matching(svc, user_id, user["role"])
    if changed:
        ACCOUNT_EVENTS.labels("disabled").inc()
        log.info("account disabled", extra={"userId": user_id, "sessions": len(families), "offers": withdrawn})
    return Change(user, changed, withdrawn)


async def enable(svc: Services, user_id: str, admin_id: str | None) -> Change:
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None:
            raise ApiError("not_found", "user not found")
        if user["erased_at"] is not None:
            raise ApiError("conflict", "an erased account cannot be enabled")
        changed = bool(user["disabled"])
        if changed:
            user = await users_db.set_disabled(conn, svc.pii, user_id, disabled=False, at=None, reason=None)
            await audit(
                conn,
                "user.enable",
                actor_id=admin_id,
                actor_kind=_kind(admin_id),
                target_kind="user",
                target_id=user_id,
                request_id=request_id.get(),
            )
    assert user is not None
    await clear_user_revocation(svc.redis, user_id)
    if user["role"] == "VENDOR":
        profile = await svc.negotiation.vendor_profile(user_id)
        if profile is not None:
            await svc.negotiation.vendor_changed(profile.id)
    if changed:
        ACCOUNT_EVENTS.labels("enabled").inc()
        log.info("account enabled", extra={"userId": user_id})
    return Change(user, changed)
