"""Single-use SMS codes that change an account: password reset and phone change.

Both follow the phone verification scheme (`pocho_rt.auth.verification`): 6 digits, stored
as an HMAC keyed with the JWT secret, 10 minutes, and the fifth wrong guess burns the code
(`pocho_rt.auth.rules.code_verdict`). A new request retires the earlier code of that kind.

Password reset must not tell who has an account: the request answers the same for every
phone (only existing, enabled accounts get a text), and every failed confirmation (no such
account, no code, wrong, expired, burnt or already used code) is the same 400 `invalid`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field

from persistence import refresh_tokens
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt.auth import rules
from pocho_rt.auth.audit import mask_phone
from pocho_rt.auth.passwords import hash_password
from pocho_rt.auth.refresh import end_families
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id
from pocho_rt.metrics import ACCOUNT_EVENTS

log = logging.getLogger("pocho.auth")
RESET = "password_reset"
PHONE_CHANGE = "phone_change"


def _new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def hash_code(secret: str, purpose: str, user_id: str, code: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def bad_reset_code() -> ApiError:
    """The one answer to every failed reset confirmation."""
    return ApiError(
        "invalid",
        "wrong or expired code; request a new one if it keeps failing",
        {"code": "wrong or expired"},
    )


@dataclass(slots=True)
class _Outcome:
    error: ApiError | None = None
    families: list[str] = field(default_factory=list)


async def request_reset(svc: Services, phone: str) -> None:
    """Send a reset code to `phone` if an enabled account has it; otherwise do nothing."""
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_phone(conn, svc.pii, phone)
        if user is None or user["disabled"]:
            log.info("password reset for no usable account", extra={"phone": mask_phone(phone)})
            return
        user_id = str(user["id"])
        code = _new_code()
        digest = hash_code(svc.settings.jwt_secret, RESET, user_id, code)
        await users_db.insert_account_code(conn, user_id, RESET, None, digest, rules.CODE_TTL_SECONDS)
        await audit(conn, "auth.password_reset_requested", actor_id=user_id, request_id=request_id.get())
        text = (
            f"Your Pocho password reset code is {code}. It expires in {rules.CODE_TTL_SECONDS // 60} minutes. "
            "If you did not ask for it, ignore this message."
        )
        await svc.notify.queue_sms(conn, user_id, "password_reset", phone, text)  # same transaction
    svc.notify.wakeup()


async def confirm_reset(svc: Services, phone: str, code: str, new_password: str) -> None:
    """Set a new password with a valid code and end every session of the account."""
    out = _Outcome()
    password_hash = await hash_password(new_password)  # before the row lock: argon2 is slow on purpose
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_phone(conn, svc.pii, phone)
        if user is None:
            raise bad_reset_code()
        user_id = str(user["id"])
        row = await users_db.pending_account_code(conn, user_id, RESET)
        pending = rules.PendingCode(row["attempts"], row["expired"]) if row is not None else None
        matches = row is not None and hmac.compare_digest(
            row["code_hash"], hash_code(svc.settings.jwt_secret, RESET, user_id, code)
        )
        verdict = rules.code_verdict(pending, matches=matches)
        if verdict is rules.Code.ACCEPT and row is not None:
            await users_db.consume_account_code(conn, row["id"])
            await users_db.set_password(conn, user_id, password_hash)
            out.families = await refresh_tokens.revoke_user_families(conn, user_id)
            await audit(
                conn,
                "auth.password_reset",
                actor_id=user_id,
                details={"sessionsEnded": len(out.families)},
                request_id=request_id.get(),
            )
        else:
            if verdict in (rules.Code.WRONG, rules.Code.BURN) and row is not None:
                await users_db.count_account_attempt(conn, row["id"])
                if verdict is rules.Code.BURN:
                    await users_db.consume_account_code(conn, row["id"])
            out.error = bad_reset_code()
    if out.error:
        raise out.error
    ACCOUNT_EVENTS.labels("password_reset").inc()
    await end_families(svc, out.families, "password_reset")


async def request_phone_change(svc: Services, user_id: str, phone: str) -> int:
    """Text a code to the new number; returns its lifetime in seconds."""
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None or user["disabled"]:
            raise ApiError("unauthorized", "unknown or disabled account")
        if user["phone"] == phone:
            raise ApiError("invalid", "this is already your phone number", {"phone": "unchanged"})
        if await users_db.phone_taken(conn, svc.pii, phone):
            raise ApiError("conflict", "this phone number is already registered", {"phone": "already registered"})
        code = _new_code()
        digest = hash_code(svc.settings.jwt_secret, PHONE_CHANGE, user_id, code)
        target = svc.pii.seal("target", phone)  # a phone at rest, like users.phone
        await users_db.insert_account_code(conn, user_id, PHONE_CHANGE, target, digest, rules.CODE_TTL_SECONDS)
        text = f"Your Pocho code to use this number is {code}. It expires in {rules.CODE_TTL_SECONDS // 60} minutes."
        await svc.notify.queue_sms(conn, user_id, "phone_change", phone, text)  # same transaction
    svc.notify.wakeup()
    return rules.CODE_TTL_SECONDS


async def confirm_phone_change(svc: Services, user_id: str, code: str) -> str:
    """Move the account to the number the pending code was sent to; returns the new number."""
    out = _Outcome()
    new_phone = ""
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None or user["disabled"]:
            raise ApiError("unauthorized", "unknown or disabled account")
        row = await users_db.pending_account_code(conn, user_id, PHONE_CHANGE)
        pending = rules.PendingCode(row["attempts"], row["expired"]) if row is not None else None
        matches = row is not None and hmac.compare_digest(
            row["code_hash"], hash_code(svc.settings.jwt_secret, PHONE_CHANGE, user_id, code)
        )
        verdict = rules.code_verdict(pending, matches=matches)
        if verdict is rules.Code.NONE or row is None:
            out.error = ApiError("invalid", "no usable code: request a new one", {"code": "no pending code"})
        elif verdict is rules.Code.ACCEPT:
            await users_db.consume_account_code(conn, row["id"])
            new_phone = str(svc.pii.open("target", row["target"]))
            if await users_db.set_phone(conn, svc.pii, user_id, new_phone) is None:
                out.error = ApiError(
                    "conflict", "this phone number was registered meanwhile", {"phone": "already registered"}
                )
            else:
                await audit(conn, "user.phone_changed", actor_id=user_id, request_id=request_id.get())
        else:
            await users_db.count_account_attempt(conn, row["id"])
            if verdict is rules.Code.BURN:
                await users_db.consume_account_code(conn, row["id"])
            out.error = ApiError("invalid", "wrong code", {"code": "wrong code"})
    if out.error:
        raise out.error
    ACCOUNT_EVENTS.labels("phone_changed").inc()
    return new_phone
