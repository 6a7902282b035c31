"""Phone verification: a 6-digit code by SMS, 10 minutes, at most 5 guesses per code.

Codes are stored as HMAC-SHA256 keyed with the JWT secret, so the table alone does not
give them away (a plain hash of 10^6 possible codes would). The text (template
`verification.code` in the user's locale) is queued in the notifications outbox in the same
transaction as the code, and the dispatcher sends it (pocho_rt.notify_service).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from engine.notify_templates import render
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id

CODE_TTL = 10 * 60
MAX_ATTEMPTS = 5


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def hash_code(secret: str, user_id: str, code: str) -> str:
    return hmac.new(secret.encode(), f"verify:{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


async def request_code(svc: Services, user_id: str) -> int:
    """Create and send a code; returns its lifetime in seconds."""
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id)
        if user is None or user["disabled"]:
            raise ApiError("unauthorized", "unknown or disabled account")
        if user["phone_verified"]:
            raise ApiError("conflict", "phone is already verified")
        code = new_code()
        await users_db.insert_verification_code(
            conn, user_id, hash_code(svc.settings.jwt_secret, user_id, code), CODE_TTL
        )
        variables = {"code": code, "minutes_valid": CODE_TTL // 60}
        text = render(svc.notify.texts, "verification.code", user["locale"], variables).sms or ""
        await svc.notify.queue_sms(conn, user_id, "verify_code", user["phone"], text)  # same transaction
    svc.notify.wakeup()
    return CODE_TTL


@dataclass(slots=True)
class _Result:
    error: ApiError | None = None


async def confirm_code(svc: Services, user_id: str, code: str) -> None:
    """Mark the phone verified if `code` is the pending one; wrong guesses are counted."""
    res = _Result()
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None or user["disabled"]:
            raise ApiError("unauthorized", "unknown or disabled account")
        if user["phone_verified"]:
            return
        row = await users_db.pending_verification_code(conn, user_id)
        if row is None:
            res.error = ApiError("invalid", "no verification code pending; request one", {"code": "no pending code"})
        elif row["expired"]:
            res.error = ApiError(
                "expired", "the verification code has expired; request a new one", {"code": "expired"}, status=400
            )
        elif row["attempts"] >= MAX_ATTEMPTS:
            res.error = ApiError(
                "rate_limited", "too many wrong codes; request a new one", {"limit": "verify_attempts"}
            )
        elif hmac.compare_digest(row["code_hash"], hash_code(svc.settings.jwt_secret, user_id, code)):
            await users_db.consume_code(conn, row["id"])
            await users_db.set_phone_verified(conn, user_id)
            await audit(conn, "auth.phone_verified", actor_id=user_id, request_id=request_id.get())
        else:
            await users_db.count_code_attempt(conn, row["id"])
            res.error = ApiError("invalid", "wrong verification code", {"code": "wrong code"})
    if res.error:
        raise res.error
