"""What the payment flows share (initialise and webhooks in pocho_rt.payment_service, refunds in
pocho_rt.refunds, vendor settlement in pocho_rt.settlement): a provider client looked up by name
(the clients are built in pocho_rt.app), the answers a waiting client gets when storage or a
provider fails, and the audit row of every payment status change."""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.ports import PaymentProvider, ProviderError
from persistence.audit import audit
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id

STORAGE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
SYSTEM = "system"


def unavailable(what: str) -> ApiError:
    return ApiError("unavailable", f"{what}: storage is unavailable, retry")


def provider_failure(exc: ProviderError) -> ApiError:
    """A provider call failed while a client waited: 503 when it is worth retrying, 502 else."""
    if exc.kind == "unavailable":
        return ApiError("unavailable", "the payment provider is unavailable, retry")
    return ApiError("provider_error", f"the payment provider refused the request ({exc.kind})", status=502)


def provider_of(providers: dict[str, PaymentProvider], name: str) -> PaymentProvider:
    provider = providers.get(name)
    if provider is None:
        reason = f"{name} is not configured on this server"
        raise ApiError("invalid", f"invalid provider: {reason}", {"provider": reason})
    return provider


async def audit_status(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    before: str | None,
    after: str,
    *,
    reason: str | None = None,
    source: str | None = None,
    actor_id: str | None = None,
    actor_kind: str = SYSTEM,
    extra: dict[str, Any] | None = None,
) -> None:
    """Every payment status change has its audit row, in the transaction that makes it."""
    details: dict[str, Any] = {"from": before, "to": after, "reference": row["reference"]}
    details |= {"orderId": str(row["order_id"]), "provider": row["provider"]}
    if reason:
        details["reason"] = reason
    if source:
        details["source"] = source
    details |= extra or {}
    await audit(
        conn,
        "payment.status",
        actor_id=actor_id,
        actor_kind=actor_kind,
        target_kind="payment",
        target_id=str(row["id"]),
        details=details,
        request_id=request_id.get(),
    )
