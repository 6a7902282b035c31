"""Server CPU per acked command, side by side in one run (issue 12, target 2).

Runs the same servers and load as `../shared/bench/run` (each server on core 0, the Node load
generator `load.js` on core 1) and reads each server process's CPU time (utime + stime from
/proc/PID/stat, all threads) around the measured window: load.js measures for SECONDS and exits
at once, so the window is the last SECONDS before it exits (sampled every 50 ms). The engine's
own cost per command is Pocho's CPU per acked revision minus the bare relay's CPU per acked
message in the same run:

- `relay`: stock python-socketio relay (`../shared/bench/relay_server.py`, what `run` measures);
- `stack relay`: the same messaging on the project's own transport (`create_sio` of the `--tree`
  measured), this module with `--serve-relay`, so whatever the transport work changes is
  subtracted too;
- `pocho`: `pocho-rt serve` from THIS tree (PYTHONPATH is set: the venv's editable install may
  point at another checkout).

    .venv/bin/python -m scripts.bench_cpu --pg postgresql://postgres@127.0.0.1:5432 --rounds 2
    .venv/bin/python -m scripts.bench_cpu --pg ... --only pocho --py-spy /tmp/pocho.txt

`--py-spy FILE` samples Pocho with py-spy (`--py-spy-bin`) during the window and writes the top
functions (own and total samples) to FILE.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(os.environ.get("POCHO_BENCH_DIR", ROOT.parent / "shared" / "bench"))
PY = str(ROOT / ".venv" / "bin" / "python")
_TICK = os.sysconf("SC_CLK_TCK")
_ADMIN_KEY = "bench-admin-key-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    """utime + stime of the process (every thread), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _wait_up(port: int, path: str, proc: subprocess.Popen[bytes]) -> bool:
    for _ in range(480):
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2).read()
            return True
        except Exception:
            time.sleep(0.25)
    return False


def _node_env() -> dict[str, str]:
    deps = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pocho-bench" / "node_modules"
    if not deps.is_dir():
        sys.exit(f"run ../shared/bench/run once first: it installs the Node dependencies into {deps}")
    return {**os.environ, "NODE_PATH": str(deps), "POCHO_ADMIN_KEY": _ADMIN_KEY}


def _backends(database: str) -> list[int]:
    """PostgreSQL backends serving `database` (their process title names it)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    title = f.read()
            except OSError:
                continue
            if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                pids.append(int(d))
    return pids


class _Sampler(threading.Thread):
    """CPU seconds of one process (every 50 ms), and of the PostgreSQL backends serving
    `database` (every 250 ms; backends that come and go are counted while seen)."""

    def __init__(self, pid: int, database: str | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.database = database
        self.samples: list[tuple[float, float]] = []
        self.pg: list[tuple[float, float]] = []
        self._pg_seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), _cpu(self.pid)))
            except OSError:
                return
            if self.database and n % 5 == 0:
                for pid in _backends(self.database):
                    with contextlib.suppress(OSError):
                        self._pg_seen[pid] = _cpu(pid)
                self.pg.append((time.monotonic(), sum(self._pg_seen.values())))
            n += 1
            self.stop.wait(0.05)

    @staticmethod
    def _between(samples: list[tuple[float, float]], t0: float, t1: float) -> float:
        def at(t: float) -> float:
            return min(samples, key=lambda s: abs(s[0] - t))[1]

        return at(t1) - at(t0)

    def between(self, t0: float, t1: float) -> float:
        return self._between(self.samples, t0, t1)

    def pg_between(self, t0: float, t1: float) -> float | None:
        return self._between(self.pg, t0, t1) if self.pg else None


def _measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    mode: str,
    args: argparse.Namespace,
    ready: str,
    spy: str | None = None,
    database: str | None = None,
) -> dict[str, Any]:
    port = _port()
    cmd = [c.replace("PORT", str(port)) for c in cmd]
    env = {**env, "PORT": str(port)}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        if not _wait_up(port, ready, proc):
            log.seek(0)
            return {"name": name, "error": "server not ready", "log": log.read()[-500:].decode(errors="replace")}
        sampler = _Sampler(proc.pid, database)
        sampler.start()
        load_args = [str(args.pairs), str(args.seconds)]
        load = subprocess.Popen(
            ["taskset", "-c", "1", "node", str(BENCH / "load.js"), mode, f"http://127.0.0.1:{port}", *load_args],
            env=_node_env(),
            stdout=subprocess.PIPE,
        )
        spy_proc = None
        if spy and mode == "pocho":
            spy_proc = _start_spy_when_busy(port, proc.pid, args, load)
        out, _ = load.communicate()
        end = time.monotonic()
        time.sleep(0.1)
        sampler.stop.set()
        sampler.join()
        row: dict[str, Any] = {"name": name, **json.loads(out.decode().strip().splitlines()[-1])}
        acks = row.get("acks_per_s", 0) * args.seconds
        if acks:
            cpu = sampler.between(end - args.seconds, end)
            row["cpu_pct"] = round(100 * cpu / args.seconds, 1)
            row["cpu_us_per_ack"] = round(1e6 * cpu / acks, 1)
            pg = sampler.pg_between(end - args.seconds, end)
            if pg is not None:
                row["pg_cpu_pct"] = round(100 * pg / args.seconds, 1)
                row["pg_cpu_us_per_ack"] = round(1e6 * pg / acks, 1)
        if spy_proc is not None and spy:
            spy_proc.wait()
            _top_functions(Path(spy + ".raw"), Path(spy))
        return row
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _acks_so_far(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pocho_socket_commands_total{") and 'event="offer:revise"' in line
    )


def _start_spy_when_busy(
    port: int, pid: int, args: argparse.Namespace, load: subprocess.Popen[bytes]
) -> subprocess.Popen[bytes] | None:
    """py-spy for the middle of the window: once revisions are being acked (set-up is over)."""
    while load.poll() is None:
        try:
            if _acks_so_far(port) > 0:
                break
        except Exception:
            pass
        time.sleep(0.2)
    else:
        return None
    time.sleep(1)
    raw = args.py_spy + ".raw"
    duration = max(1, args.seconds - 3)
    return subprocess.Popen(
        [
            args.py_spy_bin,
            "record",
            "--nonblocking",
            "-p",
            str(pid),
            "-d",
            str(duration),
            "-r",
            "100",
            "-f",
            "raw",
            *("-o", raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _top_functions(raw: Path, out: Path, n: int = 40) -> None:
    """py-spy's collapsed stacks -> the functions with the most own and total samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [f.rsplit(":", 1)[0] for f in stack.split(";")]  # drop the line number
        if any("(threading.py" in f for f in frames):
            continue  # idle pool threads (DNS, hashing): the event loop's thread only
        k = int(count)
        samples += k
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    lines = [f"py-spy samples of the event loop's thread: {samples}", "", "own %  function (file)"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in own.most_common(n)]
    lines += ["", "total %  function (file)"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in total.most_common(n)]
    out.write_text("\n".join(lines) + "\n")


def serve_relay(port: int) -> None:
    """relay-server.js's messaging on the project's own transport (create_sio): `auth: {room}`
    joins that room; `offer:revise` {room, ...} is acked {ok, data: {offer}} and relayed to the
    room's customers as `offer:updated` {offer}."""
    import uvloop
    from aiohttp import web

    from pocho_rt.config import Settings
    from pocho_rt.sockets.server import create_sio
    from pocho_rt.tasks import Supervisor

    sio = create_sio(Settings(rate_limit_enabled=False), Supervisor())
    for ns in ("/customer", "/vendor"):

        async def connect(sid: str, environ: Any, auth: Any = None, ns: str = ns) -> None:
            await sio.enter_room(sid, (auth or {}).get("room", "r0"), namespace=ns)

        async def revise(sid: str, d: Any) -> Any:
            await sio.emit("offer:updated", {"offer": d}, to=d["room"], namespace="/customer")
            return {"ok": True, "data": {"offer": d}}

        sio.on("connect", connect, namespace=ns)
        sio.on("offer:revise", revise, namespace=ns)
    app = web.Application()
    sio.attach(app)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _pocho_env(pg: str | None, data: str, tree: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "POCHO_ADMIN_KEY": _ADMIN_KEY,
        "JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
        "POCHO_DATA_DIR": data,
        "RATE_LIMIT_ENABLED": "false",
        "WORKERS": "1",
        "LOG_LEVEL": "WARNING",
    }
    if pg:
        env["DATABASE_URL"] = pg
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--pg", help="PostgreSQL server URL without a database (a fresh one per Pocho run)")
    p.add_argument("--only", choices=["relay", "stack", "peer", "pocho"], action="append")
    p.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for Pocho")
    p.add_argument("--pg-setting", action="append", default=[], help="NAME=VALUE on Pocho's database")
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose Pocho to run (before/after)")
    p.add_argument("--py-spy", help="write Pocho's top functions here")
    p.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--serve-relay", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_relay:
        serve_relay(args.serve_relay)
        return
    only = set(args.only or ["relay", "stack", "peer", "pocho"])
    extra = dict(kv.split("=", 1) for kv in args.server_env)
    for rnd in range(1, args.rounds + 1):
        rows = []
        if "relay" in only:
            rows.append(
                _measure(
                    "relay",
                    [PY, str(BENCH / "relay_server.py"), "PORT"],
                    dict(os.environ),
                    "relay",
                    args,
                    "socket.io/?EIO=4&transport=polling",
                    None,
                )
            )
        if "stack" in only:
            # the relay on the transport of the tree measured (--tree), so that Pocho minus it is
            # that tree's engine: a tree from before the transport rewrite relays on its own stack
            cmd = [PY, str(ROOT / "scripts" / "bench_cpu.py"), "--serve-relay", "PORT"]
            env = {**os.environ, "PYTHONPATH": str(args.tree)}
            rows.append(_measure("stack relay", cmd, env, "relay", args, "socket.io/?EIO=4&transport=polling", None))
        if "peer" in only and args.pg:
            db = f"pocho_peer_{uuid.uuid4().hex[:8]}"
            subprocess.run(["psql", f"{args.pg}/postgres", "-qc", f"create database {db}"], check=True)
            try:
                cmd = ["node", str(BENCH / "durable-peer.js"), "PORT", f"{args.pg}/{db}"]
                rows.append(
                    _measure("peer", cmd, _node_env(), "relay", args, "socket.io/?EIO=4&transport=polling", None, db)
                )
            finally:
                subprocess.run(["psql", f"{args.pg}/postgres", "-qc", f"drop database if exists {db}"], check=False)
        if "pocho" in only:
            db = f"pocho_cpu_{uuid.uuid4().hex[:8]}"
            url = None
            if args.pg:
                subprocess.run(["psql", f"{args.pg}/postgres", "-qc", f"create database {db}"], check=True)
                for setting in args.pg_setting:  # per database: the server is shared
                    name, value = setting.split("=", 1)
                    alter = f"alter database {db} set {name} = '{value}'"
                    subprocess.run(["psql", f"{args.pg}/postgres", "-qc", alter], check=True)
                url = f"{args.pg}/{db}"
            data = tempfile.mkdtemp()
            try:
                env = {**_pocho_env(url, data, args.tree), **extra}
                cmd = [str(ROOT / ".venv" / "bin" / "pocho-rt"), "serve", "--migrate", "--seed"]
                rows.append(_measure("pocho", cmd, env, "pocho", args, "readyz", args.py_spy, db if args.pg else None))
            finally:
                shutil.rmtree(data, ignore_errors=True)
                if args.pg:
                    subprocess.run(["psql", f"{args.pg}/postgres", "-qc", f"drop database if exists {db}"], check=False)
        for r in rows:
            print(json.dumps({"round": rnd, **r}), flush=True)
        by = {r["name"]: r for r in rows}
        pocho = by.get("pocho", {}).get("cpu_us_per_ack")
        parts = []
        for base in ("relay", "stack relay"):
            b = by.get(base, {}).get("cpu_us_per_ack")
            if pocho and b:
                parts.append(f"engine us/ack vs {base} {pocho - b:.1f}")
                pb = by[base].get("p99_ms")
                if pb:
                    parts.append(f"p99 pocho/{base} {by['pocho']['p99_ms'] / pb:.2f}")
        if parts:
            print(f"round {rnd}: " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
