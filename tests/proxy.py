"""A TCP proxy a test puts in front of the real PostgreSQL or Redis to make outages.

`cut()` drops every connection and refuses new ones (accept, then abort at once), like a
crashed server or a pulled cable; `freeze()` keeps every connection open and accepts new
ones but forwards nothing, like a hung server or a black-holed network; `restore()` ends
either. Listens on 127.0.0.1:0; forwards over TCP or to a unix socket.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit, urlunsplit

Target = tuple[str, int] | str


def pg_target(url: str) -> Target:
    """Where PostgreSQL listens for this URL: (host, port), or a unix socket path."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query["host"][0] if query.get("host") else parts.hostname
    port = int(query["port"][0]) if query.get("port") else parts.port or 5432
    if host is None or host.startswith("/"):
        return f"{host or '/tmp'}/.s.PGSQL.{port}"
    return (host, port)


def via_proxy(url: str, port: int) -> str:
    """The same PostgreSQL database, user and password, reached through 127.0.0.1:port."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith(("host=", "port=")))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redis_target(url: str) -> Target:
    """Where Redis listens for this URL: (host, port), or a unix socket path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return (parts.hostname or "127.0.0.1", parts.port or 6379)


def redis_via_proxy(url: str, port: int) -> str:
    """The same Redis database (and password), reached through 127.0.0.1:port."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        dbs = [p[3:] for p in parts.query.split("&") if p.startswith("db=")]
        return f"redis://127.0.0.1:{port}/{dbs[0] if dbs else 0}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class TcpProxy:
    """See the module docstring. `accepted` counts connections forwarded upstream."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        self._cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection(*self.target)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = (writer, up_writer)
        self._links.add(link)
        pipes = [asyncio.create_task(self._pipe(reader, up_writer)), asyncio.create_task(self._pipe(up_reader, writer))]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()  # frozen: hold what was read, read no more
                dst.write(data)
                await dst.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            dst.transport.abort()

    def cut(self) -> None:
        self._cut = True
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()

    def freeze(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._cut = False
        self._flowing.set()

    async def close(self) -> None:
        self.cut()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def started(target: Target) -> TcpProxy:
    proxy = TcpProxy(target)
    await proxy.start()
    return proxy
