"""Pocho's in-memory engine: pure domain rules, actors and their runtime (no sockets, SQL or Redis)."""
