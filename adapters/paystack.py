"""Paystack's REST API (https://paystack.com/docs/api/), the parts payments use:

    POST /transaction/initialize   {email, amount (kobo), reference, currency, metadata.order_id,
                                    subaccount?, transaction_charge? (kobo)} -> data.authorization_url
    GET  /transaction/verify/{reference}  -> data {id, status, reference, amount (kobo), currency}
    POST /refund                   {transaction (reference), amount (kobo), merchant_note} -> data {id, status}
    GET  /bank/resolve?account_number=&bank_code=  -> data.account_name
    POST /subaccount               {business_name, settlement_bank, account_number,
                                    percentage_charge} -> data.subaccount_code

Answers are `{status: bool, message, data}`; a refused key is 401 "Invalid key". A split
payment passes the vendor's subaccount and our commission as `transaction_charge` (a flat
amount in kobo that overrides the subaccount's default percentage), so the commission on
each payment is exactly the one stored on it.
"""

from __future__ import annotations

from adapters.payment_http import ProviderClient, data_of, text_of
from engine import payments as pay
from engine.ports import CheckoutRequest, ProviderError, ProviderRefund

NAME = "PAYSTACK"
# Paystack transaction statuses that mean the money will not come on this attempt.
_FAILED = {"failed", "reversed"}


class PaystackClient:
    name = NAME

    def __init__(self, base_url: str, secret_key: str, timeout: float) -> None:
        self._http = ProviderClient(NAME, base_url, secret_key, timeout)

    async def close(self) -> None:
        await self._http.close()

    async def initialize(self, req: CheckoutRequest) -> str:
        body: dict[str, object] = {
            "email": req.email,
            "amount": req.amount_kobo,
            "reference": req.reference,
            "currency": pay.CURRENCY,
            "metadata": {"order_id": req.order_id},
        }
        if req.split is not None:
            body["subaccount"] = req.split.subaccount
            body["transaction_charge"] = req.split.commission_kobo
        answer = await self._http.call("initialize", "POST", "/transaction/initialize", json=body)
        return text_of(data_of(answer, NAME, "initialize"), "authorization_url", NAME, "initialize")

    async def verify(self, reference: str, tx_id: str | None) -> pay.Verified:
        try:
            answer = await self._http.call("verify", "GET", f"/transaction/verify/{reference}")
        except ProviderError as exc:
            if exc.kind == "not_found":
                return pay.Verified(pay.V_NOT_FOUND, reference=reference)
            raise
        data = data_of(answer, NAME, "verify")
        status = str(data.get("status", ""))
        outcome = pay.V_SUCCESS if status == "success" else pay.V_FAILED if status in _FAILED else pay.V_PENDING
        amount = data.get("amount")
        if outcome == pay.V_SUCCESS and (isinstance(amount, bool) or not isinstance(amount, int)):
            raise ProviderError("unavailable", "PAYSTACK verify: amount is not an integer of kobo")
        return pay.Verified(
            outcome,
            reference=str(data.get("reference", "")) or None,
            amount_kobo=amount if isinstance(amount, int) else None,
            currency=str(data.get("currency", "")) or None,
            tx_id=str(data["id"]) if data.get("id") is not None else tx_id,
        )

    async def refund(self, reference: str, tx_id: str | None, amount_kobo: int, reason: str) -> ProviderRefund:
        body = {"transaction": reference, "amount": amount_kobo, "merchant_note": reason}
        data = data_of(await self._http.call("refund", "POST", "/refund", json=body), NAME, "refund")
        rid = data.get("id")
        return ProviderRefund(None if rid is None else str(rid), str(data.get("status", "pending")))

    async def resolve_account(self, bank_code: str, account_number: str) -> str:
        answer = await self._http.call(
            "resolve_account",
            "GET",
            "/bank/resolve",
            params={"account_number": account_number, "bank_code": bank_code},
            not_found_words=("could not resolve", "not found", "invalid"),
        )
        return text_of(data_of(answer, NAME, "resolve_account"), "account_name", NAME, "resolve_account")

    async def create_subaccount(
        self, business_name: str, bank_code: str, account_number: str, commission_bps: int, phone: str
    ) -> str:
        body = {
            "business_name": business_name,
            "settlement_bank": bank_code,
            "account_number": account_number,
            "percentage_charge": commission_bps / 100,
        }
        answer = await self._http.call("create_subaccount", "POST", "/subaccount", json=body)
        return text_of(data_of(answer, NAME, "create_subaccount"), "subaccount_code", NAME, "create_subaccount")
