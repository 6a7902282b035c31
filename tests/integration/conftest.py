"""Fixtures of the integration tests beyond tests/conftest.py: the fake payment providers and a
server pointed at them (tests/integration/payments_support.py)."""

from tests.integration.payments_support import flutterwave, pay_server, paystack, pc

__all__ = ["flutterwave", "pay_server", "paystack", "pc"]
