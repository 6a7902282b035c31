"""TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps), one step of clock drift allowed."""

from __future__ import annotations

import hmac
import time

import pyotp
from redis.asyncio import Redis

ISSUER = "Pocho"
STEP = 30
WINDOW = 1  # steps accepted either side of now

# Store `step` only if it is newer than the last one used: a login code works once.
_CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def code_at(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(int(at))


def match_step(secret: str, code: object, now: float | None = None) -> int | None:
    """The time step `code` belongs to (within WINDOW of now), or None if it matches none."""
    if not isinstance(code, str) or len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


async def claim_step(redis: Redis, user_id: str, step: int) -> bool:
    """Mark a login step as used; False if this or a later step was already used (replay)."""
    ok = await redis.eval(_CLAIM, 1, f"pocho:totp:last:{user_id}", str(step), str(STEP * (2 * WINDOW + 2)))
    return bool(ok)
