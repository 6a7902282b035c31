"""Adapters: everything external behind engine ports (Redis, geo, search, SMS, payments)."""
