"""Vendors' settlement accounts: a vendor's bank account, validated with a provider's resolve API
and made a subaccount at every configured provider, and the split it gives a checkout (the
vendor's subaccount, the platform's commission). Flows: docs/PAYMENTS.md "Vendor settlement
and split payments"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from engine import payments as pay
from engine.clock import iso
from engine.ports import PaymentProvider, ProviderError, Split
from persistence import payments as db
from persistence.audit import audit
from persistence.pii import PiiCodec
from pocho_rt.config import Settings
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id
from pocho_rt.payment_common import STORAGE_ERRORS, provider_failure, unavailable


@dataclass(frozen=True, slots=True)
class VendorSettlement:
    """Owned by PaymentService: vendors call `set_settlement` (HTTP), initialise asks `split`."""

    settings: Settings
    pool: asyncpg.Pool
    providers: dict[str, PaymentProvider]
    pii: PiiCodec  # the owner's phone is sealed at rest: opened to make the subaccounts

    async def set_settlement(self, vendor_id: str, user_id: str, bank_code: str, account_number: str) -> dict[str, Any]:
        """Validate the account with a provider's resolve API, make a subaccount of it at every
        configured provider, store both."""
        owner = await db.vendor_owner(self.pool, vendor_id)
        if owner is None:
            raise ApiError("not_found", "vendor not found")
        if str(owner["user_id"]) != user_id:
            raise ApiError("forbidden", "not your vendor profile")
        if not self.providers:
            raise ApiError("unavailable", "no payment provider is configured")
        resolver = self.providers.get("PAYSTACK") or next(iter(self.providers.values()))
        try:
            account_name = await resolver.resolve_account(bank_code, account_number)
        except ProviderError as exc:
            if exc.kind == "not_found":
                reason = "the bank could not resolve this account"
                raise ApiError("invalid", f"invalid accountNumber: {reason}", {"accountNumber": reason}) from None
            raise provider_failure(exc) from None
        codes: dict[str, str | None] = {"PAYSTACK": None, "FLUTTERWAVE": None}
        bps = self.settings.platform_commission_bps
        for name, provider in self.providers.items():
            try:
                codes[name] = await provider.create_subaccount(
                    owner["display_name"], bank_code, account_number, bps, self.pii.open("phone", owner["phone"]) or ""
                )
            except ProviderError as exc:
                raise provider_failure(exc) from None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await db.upsert_settlement(
                    conn, vendor_id, bank_code, account_number, account_name, codes["PAYSTACK"], codes["FLUTTERWAVE"]
                )
                await audit(
                    conn,
                    "vendor.settlement",
                    actor_id=user_id,
                    request_id=request_id.get(),
                    target_kind="vendor",
                    target_id=vendor_id,
                    details={"bankCode": bank_code, "accountLast4": account_number[-4:]},
                )
        except STORAGE_ERRORS as exc:
            raise unavailable("settlement") from exc
        return {
            "vendorId": vendor_id,
            "bankCode": row["bank_code"],
            "accountNumber": row["account_number"],
            "accountName": row["account_name"],
            "paystackSubaccount": row["paystack_subaccount"],
            "flutterwaveSubaccount": row["flutterwave_subaccount"],
            "commissionBps": bps,
            "updatedAt": iso(row["updated_at"]),
        }

    async def split(self, vendor_id: str, provider: str, amount_kobo: int) -> Split | None:
        settlement = await db.settlement_of(self.pool, vendor_id)
        column = "paystack_subaccount" if provider == "PAYSTACK" else "flutterwave_subaccount"
        if settlement is None or not settlement[column]:
            return None
        return Split(settlement[column], pay.commission_kobo(amount_kobo, self.settings.platform_commission_bps))
