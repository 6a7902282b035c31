"""A small in-process FCM HTTP v1 plus Google's OAuth2 token endpoint: a real aiohttp server on
127.0.0.1:<random port> with the documented request and response shapes.

    POST /token   form {grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=<RS256 JWT>}
      -> 200 {access_token, expires_in, token_type: "Bearer"}
      -> 400 {error: "invalid_grant", error_description}   bad signature, iss, aud or scope
    POST /v1/projects/{project}/messages:send   Authorization: Bearer <access token>
         {"message": {"token", "notification": {"title", "body"}, "data": {str: str}}}
      -> 200 {name: "projects/{project}/messages/<id>"}
      -> 401 UNAUTHENTICATED                 unknown, expired or revoked access token
      -> 404 NOT_FOUND + FcmError UNREGISTERED      device token in `unregistered`
      -> 400 INVALID_ARGUMENT + FcmError INVALID_ARGUMENT   device token not FCM-shaped
      -> 400 INVALID_ARGUMENT + google.rpc.BadRequest       a non-string data value etc.
      -> 403 PERMISSION_DENIED + FcmError SENDER_ID_MISMATCH   device token in `other_sender`
      -> 429 RESOURCE_EXHAUSTED + QUOTA_EXCEEDED, 500 INTERNAL, 503 UNAVAILABLE (via `fail_next`)

The JWT assertion is verified with the service account's public key, as Google does.
Test controls: `expires_in` of issued tokens, `expire_tokens()` (every issued access token
is rejected from now on, as after expiry or revocation), `reject_tokens` (every access token
is rejected, even fresh ones), `fail_next` / `token_fail_next`
(statuses answered before normal handling), `hang` (an unset asyncio.Event the send handler
waits on: the client's timeout fires first; a request whose caller hung up meanwhile is not
delivered, counted in `dropped`), `arrived`, `waiting`, `delivered`, `tokens_issued`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.local import serve

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

_STATUS_NAMES = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_FCM_CODES = {429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def fcm_error(status: int, status_name: str, message: str, fcm_code: str | None = None, **extra: Any) -> web.Response:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if extra.get("bad_field"):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": extra["bad_field"], "description": message}],
            }
        )
    return web.json_response(
        {"error": {"code": status, "message": message, "status": status_name, "details": details}}, status=status
    )


class FakeFcm:
    def __init__(self, project_id: str = "pocho-test") -> None:
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = key.public_key()
        self.private_key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.expires_in = 3599
        self.fail_next: list[int] = []
        self.token_fail_next: list[int] = []
        self.hang: asyncio.Event | None = None
        self.unregistered: set[str] = set()
        self.other_sender: set[str] = set()
        self.delivered: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self.reject_tokens = False
        self.arrived = asyncio.Event()  # set when any send request arrives
        self.waiting: list[web.Request] = []  # send requests held by `hang`
        self.dropped = 0  # held requests whose caller had hung up when released
        self.url = ""
        self._valid_tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    def service_account_json(self) -> str:
        """What FCM_SERVICE_ACCOUNT_JSON would hold, pointing token_uri at this server."""
        return json.dumps(
            {
                "type": "service_account",
                "project_id": self.project_id,
                "private_key_id": "fake-key-1",
                "private_key": self.private_key_pem,
                "client_email": self.client_email,
                "client_id": "1234567890",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": f"{self.url}/token",
            }
        )

    def expire_tokens(self) -> None:
        self._valid_tokens.clear()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        self._runner, self.url = await serve(app)
        return self.url

    async def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self._runner:
            await self._runner.cleanup()

    async def token(self, request: web.Request) -> web.Response:
        if self.token_fail_next:
            status = self.token_fail_next.pop(0)
            return web.json_response({"error": "internal_failure"}, status=status)
        form = await request.post()
        if form.get("grant_type") != GRANT_TYPE:
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, status=400
            )
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self._public_key,
                algorithms=["RS256"],
                audience=f"{self.url}/token",
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if claims.get("iss") != self.client_email or claims.get("scope") != SCOPE:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid JWT claims"}, status=400)
        self.tokens_issued += 1
        access = f"ya29.fake-{self.tokens_issued}"
        self._valid_tokens.add(access)
        return web.json_response({"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"})

    async def send(self, request: web.Request) -> web.Response:
        self.arrived.set()
        if self.hang is not None:
            self.waiting.append(request)
            await self.hang.wait()
            if request.transport is None or request.transport.is_closing():
                self.dropped += 1  # the caller hung up first: it never learns of a delivery
                return web.Response(status=499)
        auth = request.headers.get("Authorization", "")
        if self.reject_tokens or not auth.startswith("Bearer ") or auth[7:] not in self._valid_tokens:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.match_info["project"] != self.project_id:
            return fcm_error(403, "PERMISSION_DENIED", "Permission denied on project.")
        if self.fail_next:
            status = self.fail_next.pop(0)
            return fcm_error(status, _STATUS_NAMES.get(status, "UNKNOWN"), "Try again later.", _FCM_CODES.get(status))
        try:
            body = await request.json()
            message = body["message"]
            device = message["token"]
            note = message.get("notification", {})
            data = message.get("data", {})
        except (ValueError, KeyError, TypeError, AttributeError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", bad_field="message")
        for k, v in data.items():
            if not isinstance(v, str):
                return fcm_error(
                    400, "INVALID_ARGUMENT", f"Invalid value at 'message.data[{k}]'", bad_field=f"message.data[{k}]"
                )
        if not isinstance(note.get("title"), str) or not isinstance(note.get("body"), str):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid notification", bad_field="message.notification")
        if not isinstance(device, str) or len(device) < 20 or ":" not in device:
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            )
        if device in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if device in self.other_sender:
            return fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}"
        self.delivered.append({"name": name, **message})
        return web.json_response({"name": name})
