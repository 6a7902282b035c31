"""Tokens, passwords and the principal of a request or socket."""
