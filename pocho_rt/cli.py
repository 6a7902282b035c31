"""`pocho-rt`: serve, migrate, seed, create-admin, pii-keygen, pii-rotate, conformance.

With DATABASE_URL / REDIS_URL unset, embedded PostgreSQL and Redis are started under
POCHO_DATA_DIR and stopped on exit, so a fresh clone needs no services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pocho_rt.app import close_services, default_node_id, open_services, run_migrations, serve
from pocho_rt.config import ConfigError, Settings, load_settings
from pocho_rt.embedded import EmbeddedServices, EmbeddedUnavailable
from pocho_rt.logs import setup_logging

log = logging.getLogger("pocho.cli")


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _urls(settings: Settings, embedded: EmbeddedServices) -> tuple[str, str]:
    embedded.start(need_pg=settings.database_url is None, need_redis=settings.redis_url is None)
    db = settings.database_url or embedded.database_url
    rd = settings.redis_url or embedded.redis_url
    assert db and rd
    return db, rd


def _serve_process(settings: Settings, db: str, rd: str, do_migrate: bool, do_seed: bool) -> None:
    """One node: its own event loop, stopped cleanly by SIGTERM or SIGINT."""
    setup_logging(settings.log_level)
    _install_uvloop()
    gc.set_threshold(*settings.gc_threshold)  # a process-wide policy: set where the process starts

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, db, rd, do_migrate=do_migrate, do_seed=do_seed, stop=stop)

    asyncio.run(main())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    settings = replace(
        settings,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        node_id=args.node_id or settings.node_id,
        workers=args.workers or settings.workers,
    )
    embedded = EmbeddedServices(settings.data_dir)
    try:
        db, rd = _urls(settings, embedded)
        if settings.workers == 1:
            _serve_process(settings, db, rd, args.migrate, args.seed)
            return
        if args.migrate or args.seed:
            _run(settings, db, rd, lambda svc: _prepare(svc, args.migrate, args.seed))
        base = settings.node_id or default_node_id()
        procs = [
            multiprocessing.Process(
                target=_serve_process,
                args=(replace(settings, node_id=f"{base}-w{i}"), db, rd, False, False),
            )
            for i in range(settings.workers)
        ]
        for p in procs:
            p.start()

        def _terminate(*_: object) -> None:
            for p in procs:
                p.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.join()
    finally:
        embedded.stop()


async def _prepare(svc: object, do_migrate: bool, do_seed: bool) -> None:
    from pocho_rt.context import Services
    from pocho_rt.seed import seed

    assert isinstance(svc, Services)
    if do_migrate:
        await run_migrations(svc.pool)
    if do_seed:
        await seed(svc.pool, svc.pii)


async def _reindex(svc: object) -> None:
    from persistence.catalogue import enqueue_full_reindex
    from pocho_rt.context import Services

    assert isinstance(svc, Services)
    async with svc.pool.acquire() as conn:
        print(f"{await enqueue_full_reindex(conn)} documents queued")


def _run(settings: Settings, db: str, rd: str, fn: Callable[[object], Awaitable[None]]) -> None:
    async def main() -> None:
        svc = await open_services(settings, db, rd)
        try:
            await fn(svc)
        finally:
            await close_services(svc)

    asyncio.run(main())


def _with_services(settings: Settings, fn: Callable[[object], Awaitable[None]]) -> None:
    embedded = EmbeddedServices(settings.data_dir)
    try:
        db, rd = _urls(settings, embedded)
        _run(settings, db, rd, fn)
    finally:
        embedded.stop()


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> None:
    from persistence.users import create_user
    from pocho_rt.auth.passwords import hash_password

    password = args.password or os.environ.get("POCHO_ADMIN_PASSWORD") or getpass.getpass("password: ")
    if len(password) < 8:
        raise SystemExit("password must be at least 8 characters")

    async def go(svc: object) -> None:
        from pocho_rt.context import Services

        assert isinstance(svc, Services)
        async with svc.pool.acquire() as conn:
            user = await create_user(
                conn,
                svc.pii,
                phone=args.phone,
                password_hash=await hash_password(password),
                role="ADMIN",
                first_name=args.first_name,
                last_name=args.last_name,
                email=None,
            )
        if user is None:
            raise SystemExit(f"phone {args.phone} is already registered")
        print(f"admin {user['id']} created")

    _with_services(settings, go)


def cmd_pii_keygen(args: argparse.Namespace) -> None:
    """users (issue 15): fresh keys for personal data at rest, as environment lines."""
    import base64

    from persistence.pii import KEY_BYTES, new_key_text

    print(f"POCHO_PII_KEY={new_key_text(args.kid)}")
    print(f"POCHO_PII_INDEX_KEY={base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip('=')}")


async def _pii_rotate(svc: object, batch: int) -> None:
    """users (issue 15): re-seal personal columns under the current keys (docs/USERS.md)."""
    from persistence.pii_rotation import rotate_codes, rotate_requests, rotate_texts
    from persistence.users import rotate_pii
    from pocho_rt.context import Services

    assert isinstance(svc, Services)
    seen, changed = await rotate_pii(svc.pool, svc.pii, batch)
    print(f"pii-rotate: {seen} users seen, {changed} re-sealed under key {svc.pii.current!r}")
    seen, changed = await rotate_requests(svc.pool, svc.pii, batch)
    print(f"pii-rotate: {seen} meal requests seen, {changed} stored values re-sealed (rows, events, replies)")
    seen, changed = await rotate_texts(svc.pool, svc.pii, batch)
    print(f"pii-rotate: {seen} texts seen, {changed} recipients re-sealed")
    print(f"pii-rotate: {await rotate_codes(svc.pool, svc.pii)} pending phone-change codes re-sealed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pocho-rt", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server (HTTP + Socket.IO)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--node-id")
    s.add_argument("--workers", type=int)
    s.add_argument("--migrate", action="store_true", help="apply migrations first")
    s.add_argument("--seed", action="store_true", help="seed demo data first (idempotent)")
    sub.add_parser("migrate", help="apply pending SQL migrations")
    sub.add_parser("seed", help="seed demo data (idempotent)")
    sub.add_parser("reindex", help="queue every vendor and menu item for the Meilisearch sync")
    a = sub.add_parser("create-admin", help="create an ADMIN account")
    a.add_argument("--phone", required=True)
    a.add_argument("--password")
    a.add_argument("--first-name", default="Ops")
    a.add_argument("--last-name", default="Admin")
    k = sub.add_parser("pii-keygen", help="print fresh POCHO_PII_KEY and POCHO_PII_INDEX_KEY values")
    k.add_argument("--kid", default="k1", help="the new key's id (letters, digits, _ or -)")
    r = sub.add_parser("pii-rotate", help="re-seal personal data under the current POCHO_PII_KEY")
    r.add_argument("--batch", type=int, default=500)
    c = sub.add_parser("conformance", help="serve the official Socket.IO/Engine.IO protocol suites' test server")
    c.add_argument("--host", default="localhost")
    c.add_argument("--port", type=int, default=3000)
    c.add_argument("--engineio", action="store_true", help="the engine.io suite's bare echo server")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"pocho-rt: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    try:
        if args.cmd == "serve":
            cmd_serve(settings, args)
        elif args.cmd == "migrate":
            _with_services(settings, lambda svc: _prepare(svc, True, False))
        elif args.cmd == "seed":
            _with_services(settings, lambda svc: _prepare(svc, True, True))
        elif args.cmd == "reindex":
            _with_services(settings, _reindex)
        elif args.cmd == "create-admin":
            cmd_create_admin(settings, args)
        elif args.cmd == "conformance":
            from pocho_rt.transport.conformance import run as run_conformance

            _install_uvloop()
            run_conformance(settings, args.host, args.port, args.engineio)
        elif args.cmd == "pii-keygen":
            cmd_pii_keygen(args)
        elif args.cmd == "pii-rotate":
            _with_services(settings, lambda svc: _pii_rotate(svc, args.batch))
    except EmbeddedUnavailable as exc:
        print(f"pocho-rt: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
