"""A small in-process Paystack: the endpoints adapters/paystack.py calls, with the request and
answer shapes of Paystack's API reference (https://paystack.com/docs/api/ and the
PaystackOSS/doc-code-snippets response samples):

    POST /transaction/initialize       -> {status: true, message: "Authorization URL created",
                                           data: {authorization_url, access_code, reference}}
    GET  /transaction/verify/{ref}     -> {status: true, message: "Verification successful", data: {id,
                                           domain, status, reference, amount, currency, ...}};
                                          unknown: 400 {status: false, message: "Transaction reference not found"}
    POST /refund {transaction, amount} -> {status: true, message: "Refund has been queued for processing",
                                           data: {transaction, amount, status: "pending", id, ...}}
    GET  /bank/resolve?account_number=&bank_code= -> {status: true, message: "Account number resolved",
                                           data: {account_number, account_name, bank_id}};
                                          unknown: 422 "Could not resolve account name..."
    POST /subaccount                   -> 201 {status: true, message: "Subaccount created", data: {...,
                                           subaccount_code}}

A wrong or missing bearer key: 401 {status: false, message: "Invalid key"}. A transaction
starts "abandoned" (nobody paid yet); the test decides its outcome with `settle`. `charge_event`
and `refund_event` build webhook bodies in Paystack's documented shapes.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.fakes.payment_common import FakeServer, now_iso, token

_ids = itertools.count(4099260516)


class FakePaystack(FakeServer):
    def __init__(self, secret_key: str = "sk_test_fake_paystack_key_0123456789") -> None:
        super().__init__(secret_key)
        self.transactions: dict[str, dict[str, Any]] = {}  # by reference
        self.refunds: list[dict[str, Any]] = []
        self.accounts: dict[tuple[str, str], str] = {("058", "0123456789"): "ADA OBI FOODS"}
        self.subaccounts: dict[str, dict[str, Any]] = {}

    def unauthorized(self) -> web.Response:
        return web.json_response({"status": False, "message": "Invalid key"}, status=401)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/transaction/initialize", self.initialize)
        app.router.add_get("/transaction/verify/{reference}", self.verify)
        app.router.add_post("/refund", self.refund)
        app.router.add_get("/bank/resolve", self.resolve)
        app.router.add_post("/subaccount", self.subaccount)

    @staticmethod
    def _error(message: str, status: int = 400) -> web.Response:
        return web.json_response({"status": False, "message": message}, status=status)

    # ------------------------------------------------------------ test controls

    def settle(
        self, reference: str, status: str = "success", amount: int | None = None, currency: str = "NGN"
    ) -> dict[str, Any]:
        """The customer paid (or failed to): the transaction's verify answer from now on."""
        tx = self.transactions[reference]
        tx.update(status=status, currency=currency, paid_at=now_iso() if status == "success" else None)
        if amount is not None:
            tx["amount"] = amount
        return tx

    def charge_event(self, reference: str, event: str = "charge.success", **overrides: Any) -> dict[str, Any]:
        tx = self.transactions[reference]
        data = {
            "id": tx["id"],
            "domain": "test",
            "status": tx["status"] if event == "charge.success" else "failed",
            "reference": reference,
            "amount": tx["amount"],
            "message": None,
            "gateway_response": "Successful",
            "paid_at": tx.get("paid_at"),
            "created_at": tx["created_at"],
            "channel": "card",
            "currency": tx["currency"],
            "ip_address": "197.210.54.33",
            "metadata": tx["metadata"],
            "fees": 10250,
            "customer": {"id": 181873746, "email": tx["email"], "customer_code": "CUS_1rkzaqsv4rrhqo6"},
            "authorization": {"authorization_code": "AUTH_uh8bcl3zbn", "bin": "408408", "last4": "4081"},
            "plan": {},
            "requested_amount": tx["amount"],
            **overrides,
        }
        return {"event": event, "data": data}

    def refund_event(self, reference: str, amount: int, status: str = "processed") -> dict[str, Any]:
        return {
            "event": f"refund.{status}",
            "data": {
                "status": status,
                "transaction_reference": reference,
                "refund_reference": f"RF_{token(6)}" if status != "pending" else None,
                "amount": str(amount),
                "currency": "NGN",
                "processor": "mpgs_zen",
                "customer": {"first_name": "Ada", "last_name": "Obi", "email": "ada@example.com"},
                "integration": 412829,
                "domain": "test",
            },
        }

    # ------------------------------------------------------------ endpoints

    async def initialize(self, request: web.Request) -> web.Response:
        body = await request.json()
        email, amount, reference = body.get("email"), body.get("amount"), body.get("reference")
        if not email:
            return self._error("Email Address is required")
        if not isinstance(amount, int) and not (isinstance(amount, str) and amount.isdigit()):
            return self._error("Invalid Amount Sent")
        reference = reference or token(5)
        if reference in self.transactions:
            return self._error("Duplicate Transaction Reference")
        access_code = token(7)
        self.transactions[reference] = {
            "id": next(_ids),
            "reference": reference,
            "amount": int(amount),
            "currency": body.get("currency", "NGN"),
            "email": email,
            "status": "abandoned",
            "metadata": body.get("metadata") or {},
            "subaccount": body.get("subaccount"),
            "transaction_charge": body.get("transaction_charge"),
            "created_at": now_iso(),
            "refunded": 0,
        }
        return web.json_response(
            {
                "status": True,
                "message": "Authorization URL created",
                "data": {
                    "authorization_url": f"https://checkout.paystack.com/{access_code}",
                    "access_code": access_code,
                    "reference": reference,
                },
            }
        )

    async def verify(self, request: web.Request) -> web.Response:
        tx = self.transactions.get(request.match_info["reference"])
        if tx is None:
            return self._error("Transaction reference not found")
        data = {
            "id": tx["id"],
            "domain": "test",
            "status": tx["status"],
            "reference": tx["reference"],
            "receipt_number": None,
            "amount": tx["amount"],
            "message": None,
            "gateway_response": "Successful" if tx["status"] == "success" else "The transaction was not completed",
            "paid_at": tx.get("paid_at"),
            "created_at": tx["created_at"],
            "channel": "card",
            "currency": tx["currency"],
            "metadata": tx["metadata"],
            "fees": 10283,
            "customer": {"id": 181873746, "email": tx["email"], "customer_code": "CUS_1rkzaqsv4rrhqo6"},
            "subaccount": {"subaccount_code": tx["subaccount"]} if tx["subaccount"] else {},
            "requested_amount": tx["amount"],
        }
        return web.json_response({"status": True, "message": "Verification successful", "data": data})

    async def refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        ref = str(body.get("transaction", ""))
        tx = self.transactions.get(ref) or next((t for t in self.transactions.values() if str(t["id"]) == ref), None)
        if tx is None:
            return self._error("Transaction not found", 404)
        if tx["status"] != "success":
            return self._error("Cannot refund a transaction that was not successful")
        amount = int(body.get("amount") or tx["amount"] - tx["refunded"])
        if amount > tx["amount"] - tx["refunded"]:
            return self._error("Refund amount cannot be greater than the transaction amount")
        tx["refunded"] += amount
        refund = {
            "transaction": {"id": tx["id"], "reference": tx["reference"], "amount": tx["amount"], "currency": "NGN"},
            "integration": 412829,
            "deducted_amount": 0,
            "channel": None,
            "merchant_note": body.get("merchant_note", ""),
            "customer_note": f"Refund for transaction {tx['reference']}",
            "status": "pending",
            "refunded_by": "ops@pocho.example",
            "expected_at": now_iso(),
            "currency": "NGN",
            "domain": "test",
            "amount": amount,
            "fully_deducted": False,
            "id": 3018284 + len(self.refunds),
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
        }
        self.refunds.append(refund)
        return web.json_response({"status": True, "message": "Refund has been queued for processing", "data": refund})

    async def resolve(self, request: web.Request) -> web.Response:
        key = (request.query.get("bank_code", ""), request.query.get("account_number", ""))
        name = self.accounts.get(key)
        if name is None:
            return self._error("Could not resolve account name. Check parameters or try again.", 422)
        data = {"account_number": key[1], "account_name": name, "bank_id": 9}
        return web.json_response({"status": True, "message": "Account number resolved", "data": data})

    async def subaccount(self, request: web.Request) -> web.Response:
        body = await request.json()
        for field in ("business_name", "settlement_bank", "account_number", "percentage_charge"):
            if body.get(field) in (None, ""):
                return self._error(f"{field} is required")
        code = f"ACCT_{token(7)}"
        data = {
            "business_name": body["business_name"],
            "account_number": body["account_number"],
            "percentage_charge": body["percentage_charge"],
            "settlement_bank": "Guaranty Trust Bank",
            "currency": "NGN",
            "bank": 9,
            "integration": 463433,
            "domain": "test",
            "account_name": self.accounts.get((body["settlement_bank"], body["account_number"]), ""),
            "product": "collection",
            "subaccount_code": code,
            "is_verified": False,
            "settlement_schedule": "AUTO",
            "active": True,
            "id": 1151727 + len(self.subaccounts),
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
        }
        self.subaccounts[code] = data
        return web.json_response({"status": True, "message": "Subaccount created", "data": data}, status=201)
