"""Real `pocho-rt serve` processes for the crash and cluster tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile

import aiohttp

from tests.helpers import eventually

SECRET = "crash-test-secret-crash-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """A real `pocho-rt serve` process."""

    def __init__(self, database_url: str, redis_url: str, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "JWT_SECRET": SECRET,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "POCHO_SWEEP_SECONDS": "0.2",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_ENABLED": "false",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # the server's stderr (JSON log lines)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def start(self) -> None:
        proc = self.proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "pocho_rt.cli", "serve"], env=self.env, stderr=self.log
        )
        async with aiohttp.ClientSession() as s:

            async def ready() -> bool:  # the child process gives no event to await: poll readiness
                assert proc.poll() is None, "server exited"
                try:
                    async with s.get(self.url + "/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=60, what="the server to become ready")

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but runs nothing (a long GC or VM pause)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.send_signal(signal.SIGCONT)  # a paused node must run to see SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
