"""Flutterwave's v3 REST API (https://developer.flutterwave.com/reference), the parts payments use:

    POST /v3/payments              {tx_ref, amount (naira, decimal), currency, customer {email, name},
                                    meta.order_id, redirect_url, subaccounts?} -> data.link
    GET  /v3/transactions/{id}/verify               -> data {id, tx_ref, status, amount (naira), currency}
    GET  /v3/transactions/verify_by_reference?tx_ref=  the same, when no transaction id is known yet
    POST /v3/transactions/{id}/refund {amount (naira), comments} -> data {id, status}
    POST /v3/accounts/resolve      {account_number, account_bank} -> data.account_name
    POST /v3/subaccounts           {account_bank, account_number, business_name, business_mobile,
                                    country, split_type, split_value} -> data.subaccount_id

Answers are `{status: "success"|"error", message, data}`. Amounts are naira and may carry
decimals: they go out as the exact decimal of the kobo amount and come back through
`engine.payments.naira_to_kobo` (Decimal). A split payment passes the vendor's subaccount with
`transaction_charge_type: flat` and our commission in naira (overriding its default split).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.payment_http import ProviderClient, data_of, text_of
from engine import payments as pay
from engine.ports import CheckoutRequest, ProviderError, ProviderRefund

NAME = "FLUTTERWAVE"
_NOT_FOUND = ("no transaction", "not found", "invalid", "could not")


def _naira(kobo: int) -> float:
    """Kobo as a JSON number of naira: the float of an exact two-place decimal prints exactly."""
    return float(Decimal(kobo) / 100)


class FlutterwaveClient:
    name = NAME

    def __init__(self, base_url: str, secret_key: str, timeout: float, redirect_url: str) -> None:
        self._http = ProviderClient(NAME, base_url, secret_key, timeout)
        self._redirect_url = redirect_url

    async def close(self) -> None:
        await self._http.close()

    async def initialize(self, req: CheckoutRequest) -> str:
        body: dict[str, Any] = {
            "tx_ref": req.reference,
            "amount": _naira(req.amount_kobo),
            "currency": pay.CURRENCY,
            "customer": {"email": req.email, "name": req.customer_name},
            "meta": {"order_id": req.order_id},
        }
        if self._redirect_url:
            body["redirect_url"] = self._redirect_url
        if req.split is not None:
            body["subaccounts"] = [
                {
                    "id": req.split.subaccount,
                    "transaction_charge_type": "flat",
                    "transaction_charge": _naira(req.split.commission_kobo),
                }
            ]
        answer = await self._http.call("initialize", "POST", "/v3/payments", json=body)
        return text_of(data_of(answer, NAME, "initialize"), "link", NAME, "initialize")

    async def _transaction(self, reference: str, tx_id: str | None) -> dict[str, Any] | None:
        try:
            if tx_id:
                answer = await self._http.call(
                    "verify", "GET", f"/v3/transactions/{tx_id}/verify", not_found_words=_NOT_FOUND
                )
            else:
                answer = await self._http.call(
                    "verify",
                    "GET",
                    "/v3/transactions/verify_by_reference",
                    params={"tx_ref": reference},
                    not_found_words=_NOT_FOUND,
                )
        except ProviderError as exc:
            if exc.kind == "not_found":
                return None
            raise
        return data_of(answer, NAME, "verify")

    async def verify(self, reference: str, tx_id: str | None) -> pay.Verified:
        data = await self._transaction(reference, tx_id)
        if data is None:
            return pay.Verified(pay.V_NOT_FOUND, reference=reference, tx_id=tx_id)
        status = str(data.get("status", ""))
        outcome = pay.V_SUCCESS if status == "successful" else pay.V_FAILED if status == "failed" else pay.V_PENDING
        try:
            amount = pay.naira_to_kobo(data.get("amount"))
        except ValueError:
            if outcome == pay.V_SUCCESS:
                raise ProviderError("unavailable", "FLUTTERWAVE verify: amount is not a number") from None
            amount = None
        return pay.Verified(
            outcome,
            reference=str(data.get("tx_ref", "")) or None,
            amount_kobo=amount,
            currency=str(data.get("currency", "")) or None,
            tx_id=str(data["id"]) if data.get("id") is not None else tx_id,
        )

    async def refund(self, reference: str, tx_id: str | None, amount_kobo: int, reason: str) -> ProviderRefund:
        if not tx_id:
            data = await self._transaction(reference, None)
            if data is None or data.get("id") is None:
                raise ProviderError("not_found", "FLUTTERWAVE refund: no transaction for this reference")
            tx_id = str(data["id"])
        body = {"amount": _naira(amount_kobo), "comments": reason}
        answer = await self._http.call("refund", "POST", f"/v3/transactions/{tx_id}/refund", json=body)
        data = data_of(answer, NAME, "refund")
        rid = data.get("id")
        return ProviderRefund(None if rid is None else str(rid), str(data.get("status", "pending")))

    async def resolve_account(self, bank_code: str, account_number: str) -> str:
        body = {"account_number": account_number, "account_bank": bank_code}
        answer = await self._http.call(
            "resolve_account", "POST", "/v3/accounts/resolve", json=body, not_found_words=_NOT_FOUND
        )
        return text_of(data_of(answer, NAME, "resolve_account"), "account_name", NAME, "resolve_account")

    async def create_subaccount(
        self, business_name: str, bank_code: str, account_number: str, commission_bps: int, phone: str
    ) -> str:
        body = {
            "account_bank": bank_code,
            "account_number": account_number,
            "business_name": business_name,
            "business_mobile": phone,
            "country": "NG",
            "split_type": "percentage",
            "split_value": commission_bps / 10_000,
        }
        answer = await self._http.call("create_subaccount", "POST", "/v3/subaccounts", json=body)
        return text_of(data_of(answer, NAME, "create_subaccount"), "subaccount_id", NAME, "create_subaccount")
