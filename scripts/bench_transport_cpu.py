"""Server CPU per ack for Socket.IO relays under ../shared/bench/loadraw.js (issue 13).

`../shared/bench/transport` reports acks/s, which on a machine shared with other sessions
moves with the neighbours' load; the server's own CPU time per ack (user + system, from
/proc) moves much less. Each relay runs pinned to CPU 0 and the load client to CPU 1, one
after the other in one run; `PORT` in a command is replaced by a free port.

    .venv/bin/python -m scripts.bench_transport_cpu --pairs 100 --seconds 10 \
        "node ../shared/bench/relay-server.js PORT" \
        ".venv/bin/python -m scripts.relay_transport --port PORT"

Needs the bench's node_modules (run ../shared/bench/transport once; it installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of the process and its threads (utime, stime: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _wait_up(port: int) -> None:
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling", timeout=1).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def measure(cmd: str, pairs: int, seconds: int) -> dict[str, Any]:
    port = _free_port()
    argv = ["taskset", "-c", "0", *shlex.split(cmd.replace("PORT", str(port)))]
    env = os.environ | {"NODE_PATH": str(Path.home() / ".cache" / "pocho-bench" / "node_modules")}
    server = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    try:
        _wait_up(port)
        before = _cpu_seconds(server.pid)
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "node",
                str(BENCH / "loadraw.js"),
                f"http://127.0.0.1:{port}",
                str(pairs),
                str(seconds),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        cpu = _cpu_seconds(server.pid) - before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    acks = row.get("acks_per_s", 0) * seconds
    row["cpu_us_per_ack"] = round(cpu * 1e6 / max(1, acks), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()
    rows = [(cmd, measure(cmd, args.pairs, args.seconds)) for cmd in args.commands]
    for cmd, row in rows:
        print(f"{cmd}: {json.dumps(row)}")
    base_rate, base_cpu = rows[0][1].get("acks_per_s") or 1, rows[0][1]["cpu_us_per_ack"] or 1
    for cmd, row in rows[1:]:
        print(
            f"vs first: {cmd}: acks/s {row.get('acks_per_s', 0) / base_rate:.2f}x, "
            f"CPU per ack {row['cpu_us_per_ack'] / base_cpu:.2f}x"
        )


if __name__ == "__main__":
    main()
