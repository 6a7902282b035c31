"""Access tokens: HS256 JWTs with sub, role, sid, exp, iat, jti (PROTOCOL "Accounts").

Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail like forged ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

ROLES = ("CUSTOMER", "VENDOR", "RIDER", "ADMIN")
_REQUIRED = ["sub", "role", "sid", "exp", "iat", "jti"]


def new_refresh_token() -> str:
    """An opaque refresh token: 32 random bytes, URL-safe. Only its hash is stored."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """The stored form of a refresh token (hex sha256); the token itself has 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def successor_refresh_token(secret: str, presented: str) -> str:
    """The refresh token that rotating `presented` issues: HMAC-derived, not random, so a retry
    inside the refresh grace can be answered with the same token while only hashes are stored.
    Unguessable without both the presented token and the server secret."""
    mac = hmac.new(secret.encode(), b"refresh-successor:" + presented.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def successor_jti(secret: str, presented: str) -> str:
    """The `jti` of the access token issued with a rotation (same derivation, other label)."""
    return hmac.new(secret.encode(), b"refresh-jti:" + presented.encode(), hashlib.sha256).hexdigest()[:32]


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: taken from a verified access token."""

    user_id: str
    role: str
    sid: str
    iat: int
    exp: int


@dataclass(frozen=True, slots=True)
class TokenService:
    secret: str
    access_ttl: int

    def issue(
        self, user_id: str, role: str, sid: str, *, issued_at: int | None = None, jti: str | None = None
    ) -> tuple[str, int]:
        """Return (token, expires_in seconds). With `issued_at` and `jti` given the token is
        deterministic: the refresh grace re-issues the very token a lost response carried."""
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "sub": user_id,
            "role": role,
            "sid": sid,
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": jti or uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.secret, algorithm="HS256"), self.access_ttl

    def verify(self, token: object) -> Principal:
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise TokenError("missing token")
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": _REQUIRED})
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        role = claims.get("role")
        if role not in ROLES or not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
            raise TokenError("bad claims")
        return Principal(
            user_id=claims["sub"], role=role, sid=claims["sid"], iat=int(claims["iat"]), exp=int(claims["exp"])
        )
