"""Fixtures of the integration tests beyond tests/conftest.py: the fake payment providers and a
server pointed at them (tests/integration/payments_support.py), the transport's conformance
servers (tests/integration/transport_support.py), and a cuttable TCP proxy in front of the
test PostgreSQL (tests/proxy.py)."""

from collections.abc import AsyncIterator

import pytest

from tests.integration.payments_support import flutterwave, pay_server, paystack, pc
from tests.integration.transport_support import eio, http, sio
from tests.proxy import TcpProxy, pg_target

__all__ = ["eio", "flutterwave", "http", "pay_server", "paystack", "pc", "proxy", "sio"]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """A proxy to the test PostgreSQL that a test can cut, freeze and restore."""
    p = TcpProxy(pg_target(database_url))
    await p.start()
    try:
        yield p
    finally:
        await p.close()
