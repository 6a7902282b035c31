"""A small in-process Flutterwave (v3): the endpoints adapters/flutterwave.py calls, with the
request and answer shapes of Flutterwave's v3 API reference (https://developer.flutterwave.com):

    POST /v3/payments                      -> {status: "success", message: "Hosted Link", data: {link}}
    GET  /v3/transactions/{id}/verify      -> {status: "success", message: "Transaction fetched successfully",
                                               data: {id, tx_ref, flw_ref, amount, currency, charged_amount,
                                               status, payment_type, ...}}
    GET  /v3/transactions/verify_by_reference?tx_ref=   the same by our reference
         unknown: 400 {status: "error", message: "No transaction was found for this id", data: null}
    POST /v3/transactions/{id}/refund {amount, comments} -> {status: "success", message:
                                               "Transaction refund initiated", data: {id, tx_id, flw_ref,
                                               amount_refunded, status: "completed", ...}}
    POST /v3/accounts/resolve              -> {status: "success", message: "Account details fetched",
                                               data: {account_number, account_name}}; unknown: 400
    POST /v3/subaccounts                   -> {status: "success", message: "Subaccount created", data: {...,
                                               subaccount_id: "RS_..."}}

A wrong or missing bearer key: 401 {status: "error", message: "Invalid authorization key"}.
Amounts are naira (decimals allowed). A transaction exists once the customer attempted to pay
(`settle`); before that both verify endpoints answer "No transaction was found".
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.fakes.payment_common import FakeServer, now_iso, token

_ids = itertools.count(285959875)


class FakeFlutterwave(FakeServer):
    def __init__(self, secret_key: str = "FLWSECK_TEST-fakeflutterwavekey-X") -> None:
        super().__init__(secret_key)
        self.checkouts: dict[str, dict[str, Any]] = {}  # POST /v3/payments bodies by tx_ref
        self.transactions: dict[str, dict[str, Any]] = {}  # by tx_ref, once attempted
        self.refunds: list[dict[str, Any]] = []
        self.accounts: dict[tuple[str, str], str] = {("044", "0690000032"): "PASTOR BRIGHT"}
        self.subaccounts: dict[str, dict[str, Any]] = {}

    def unauthorized(self) -> web.Response:
        return web.json_response({"status": "error", "message": "Invalid authorization key", "data": None}, status=401)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/payments", self.payments)
        app.router.add_get("/v3/transactions/verify_by_reference", self.verify_by_reference)
        app.router.add_get("/v3/transactions/{id}/verify", self.verify)
        app.router.add_post("/v3/transactions/{id}/refund", self.refund)
        app.router.add_post("/v3/accounts/resolve", self.resolve)
        app.router.add_post("/v3/subaccounts", self.subaccount)

    @staticmethod
    def _error(message: str, status: int = 400) -> web.Response:
        return web.json_response({"status": "error", "message": message, "data": None}, status=status)

    # ------------------------------------------------------------ test controls

    def settle(
        self, tx_ref: str, status: str = "successful", amount: Any = None, currency: str = "NGN"
    ) -> dict[str, Any]:
        """The customer paid (or failed): a transaction with Flutterwave's id for this tx_ref."""
        checkout = self.checkouts[tx_ref]
        tx = self.transactions.get(tx_ref) or {"id": next(_ids), "created_at": now_iso(), "refunded": 0}
        tx.update(
            tx_ref=tx_ref,
            flw_ref=f"FLW-MOCK-{token(16)}",
            amount=checkout["amount"] if amount is None else amount,
            currency=currency,
            status=status,
        )
        self.transactions[tx_ref] = tx
        return tx

    def charge_event(self, tx_ref: str, **overrides: Any) -> dict[str, Any]:
        tx = self.transactions[tx_ref]
        data = {
            "id": tx["id"],
            "tx_ref": tx_ref,
            "flw_ref": tx["flw_ref"],
            "device_fingerprint": "a42937f4a73ce8bb8b8df14e63a2df31",
            "amount": tx["amount"],
            "currency": tx["currency"],
            "charged_amount": tx["amount"],
            "app_fee": 105,
            "merchant_fee": 0,
            "processor_response": "Approved by Financial Institution",
            "auth_model": "PIN",
            "ip": "197.210.64.96",
            "narration": "CARD Transaction ",
            "status": tx["status"],
            "payment_type": "card",
            "created_at": tx["created_at"],
            "account_id": 17321,
            "customer": {"id": 215604089, "name": "Ada Obi", "phone_number": "08012345678", "email": "ada@example.com"},
            "card": {
                "first_6digits": "553188",
                "last_4digits": "2950",
                "issuer": "MASTERCARD  CREDIT",
                "type": "MASTERCARD",
            },
            **overrides,
        }
        return {"event": "charge.completed", "data": data, "event.type": "CARD_TRANSACTION"}

    def _tx_data(self, tx: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": tx["id"],
            "tx_ref": tx["tx_ref"],
            "flw_ref": tx["flw_ref"],
            "device_fingerprint": "N/A",
            "amount": tx["amount"],
            "currency": tx["currency"],
            "charged_amount": tx["amount"],
            "app_fee": 14,
            "merchant_fee": 0,
            "processor_response": "Approved by Financial Institution",
            "auth_model": "PIN",
            "ip": "::ffff:10.5.179.3",
            "narration": "CARD Transaction ",
            "status": tx["status"],
            "payment_type": "card",
            "created_at": tx["created_at"],
            "account_id": 17321,
            "amount_settled": tx["amount"],
            "customer": {"id": 2374551, "name": "Anonymous customer", "email": "ada@example.com"},
        }

    # ------------------------------------------------------------ endpoints

    async def payments(self, request: web.Request) -> web.Response:
        body = await request.json()
        for field in ("tx_ref", "amount", "customer"):
            if body.get(field) in (None, ""):
                return self._error(f"{field} is required")
        if not isinstance(body["customer"], dict) or not body["customer"].get("email"):
            return self._error("customer.email is required")
        self.checkouts[body["tx_ref"]] = body
        link = f"https://checkout.flutterwave.com/v3/hosted/pay/{token(10)}"
        return web.json_response({"status": "success", "message": "Hosted Link", "data": {"link": link}})

    def _fetched(self, tx: dict[str, Any] | None) -> web.Response:
        if tx is None:
            return self._error("No transaction was found for this id")
        message = "Transaction fetched successfully"
        return web.json_response({"status": "success", "message": message, "data": self._tx_data(tx)})

    async def verify(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        return self._fetched(next((t for t in self.transactions.values() if str(t["id"]) == wanted), None))

    async def verify_by_reference(self, request: web.Request) -> web.Response:
        return self._fetched(self.transactions.get(request.query.get("tx_ref", "")))

    async def refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        wanted = request.match_info["id"]
        tx = next((t for t in self.transactions.values() if str(t["id"]) == wanted), None)
        if tx is None:
            return self._error("No transaction was found for this id")
        amount = float(body.get("amount") or float(tx["amount"]) - tx["refunded"])
        if amount > float(tx["amount"]) - tx["refunded"]:
            return self._error("Refund amount cannot be more than the transaction amount")
        tx["refunded"] += amount
        data = {
            "id": 75923 + len(self.refunds),
            "account_id": 73362,
            "tx_id": tx["id"],
            "flw_ref": f"URF_{token(8)}",
            "wallet_id": 74639,
            "amount_refunded": amount,
            "status": "completed",
            "destination": "payment_source",
            "meta": {"source": "availablebalance"},
            "created_at": now_iso(),
        }
        self.refunds.append(data)
        return web.json_response({"status": "success", "message": "Transaction refund initiated", "data": data})

    async def resolve(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (str(body.get("account_bank", "")), str(body.get("account_number", "")))
        name = self.accounts.get(key)
        if name is None:
            return self._error("Sorry, that account number is invalid, please check and try again")
        data = {"account_number": key[1], "account_name": name}
        return web.json_response({"status": "success", "message": "Account details fetched", "data": data})

    async def subaccount(self, request: web.Request) -> web.Response:
        body = await request.json()
        for field in ("account_bank", "account_number", "business_name", "business_mobile", "split_value"):
            if body.get(field) in (None, ""):
                return self._error(f"{field} is required")
        code = f"RS_{token(16).upper()}"
        data = {
            "id": 2181 + len(self.subaccounts),
            "account_number": body["account_number"],
            "account_bank": body["account_bank"],
            "full_name": self.accounts.get((body["account_bank"], body["account_number"]), ""),
            "created_at": now_iso(),
            "split_type": body.get("split_type", "percentage"),
            "split_value": body["split_value"],
            "subaccount_id": code,
            "bank_name": "ACCESS BANK NIGERIA",
        }
        self.subaccounts[code] = data
        return web.json_response({"status": "success", "message": "Subaccount created", "data": data})
