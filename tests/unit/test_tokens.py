"""Access tokens, refresh-token helpers and TOTP matching: pure, no I/O."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from pocho_rt.auth import totp
from pocho_rt.auth.audit import mask_phone
from pocho_rt.auth.tokens import ROLES, TokenError, TokenService, hash_refresh_token, new_refresh_token

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
svc = TokenService(SECRET, 900)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u1", "role": "CUSTOMER", "sid": "s1", "iat": now, "exp": now + 60, "jti": "j", **over}


def test_issue_and_verify_round_trip() -> None:
    token, expires_in = svc.issue("user-1", "VENDOR", "sid-1")
    assert expires_in == 900
    p = svc.verify(token)
    assert (p.user_id, p.role, p.sid) == ("user-1", "VENDOR", "sid-1")
    assert p.exp - p.iat == 900 and abs(p.iat - time.time()) < 5
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "role", "sid", "iat", "exp", "jti"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_token_has_its_own_jti() -> None:
    a, _ = svc.issue("u", "CUSTOMER", "s")
    b, _ = svc.issue("u", "CUSTOMER", "s")
    assert jwt.decode(a, SECRET, algorithms=["HS256"])["jti"] != jwt.decode(b, SECRET, algorithms=["HS256"])["jti"]


@pytest.mark.parametrize("token", [None, "", 42, b"bytes", "x" * 5000, "garbage", "a.b.c"])
def test_malformed_tokens_are_refused(token: object) -> None:
    with pytest.raises(TokenError):
        svc.verify(token)


def test_expired_token_is_refused() -> None:
    token, _ = TokenService(SECRET, -10).issue("u", "CUSTOMER", "s")
    with pytest.raises(TokenError):
        svc.verify(token)


def test_forged_and_confused_tokens_are_refused() -> None:
    forged = jwt.encode(_claims(), "some-other-secret-of-adequate-length!!", algorithm="HS256")
    hs512 = jwt.encode(_claims(), SECRET + "x" * 30, algorithm="HS512")
    none_alg = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + "."
    none_upper = _b64({"alg": "None", "typ": "JWT"}) + "." + _b64(_claims()) + "."
    good = jwt.encode(_claims(), SECRET, algorithm="HS256")
    header, _payload, sig = good.split(".")
    tampered = header + "." + _b64(_claims(role="ADMIN")) + "." + sig
    for token in (forged, hs512, none_alg, none_upper, tampered):
        with pytest.raises(TokenError):
            svc.verify(token)
    assert svc.verify(good).role == "CUSTOMER"


@pytest.mark.parametrize("missing", ["sub", "role", "sid", "exp", "iat", "jti"])
def test_required_claims(missing: str) -> None:
    claims = {k: v for k, v in _claims().items() if k != missing}
    with pytest.raises(TokenError):
        svc.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("over", [{"role": "ROOT"}, {"role": None}, {"sub": 5}, {"sid": ["x"]}])
def test_bad_claim_values(over: dict[str, Any]) -> None:
    with pytest.raises(TokenError):
        svc.verify(jwt.encode(_claims(**over), SECRET, algorithm="HS256"))


def test_every_role_verifies() -> None:
    for role in ROLES:
        assert svc.verify(svc.issue("u", role, "s")[0]).role == role


def test_refresh_tokens_are_random_and_hashed() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 43 for t in tokens)
    t = next(iter(tokens))
    assert hash_refresh_token(t) == hash_refresh_token(t) and len(hash_refresh_token(t)) == 64
    assert hash_refresh_token(t) != hash_refresh_token(t + "x") and t not in hash_refresh_token(t)


def test_totp_matching_window() -> None:
    secret = totp.new_secret()
    now = 1_700_000_015.0
    step = int(now // 30)
    assert totp.match_step(secret, totp.code_at(secret, now), now) == step
    assert totp.match_step(secret, totp.code_at(secret, now - 30), now) == step - 1
    assert totp.match_step(secret, totp.code_at(secret, now + 30), now) == step + 1
    far = totp.code_at(secret, now - 120)
    if far not in {totp.code_at(secret, now + d) for d in (-30, 0, 30)}:
        assert totp.match_step(secret, far, now) is None
    for bad in (None, 123456, "12345", "1234567", "abcdef", ""):
        assert totp.match_step(secret, bad, now) is None


def test_totp_uri() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "+2348012345678")
    assert uri.startswith("otpauth://totp/Pocho:") and "issuer=Pocho" in uri
    assert "secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" in uri


def test_mask_phone() -> None:
    assert mask_phone("+2348012345678") == "**********5678"
    assert mask_phone("123") == "123"
