#!/usr/bin/env bash
# bench_workers.sh [PAIRS] [SECONDS] [BENCH_PG]: the negotiation step of ../shared/bench/run
# (load.js "pocho" mode: PAIRS vendors revising in a closed loop, each ack relayed to its
# customer) against `pocho-rt serve` with WORKERS=1 and then WORKERS=2, in one run, on the
# same PostgreSQL and Redis. Nothing is pinned: the servers and the load generator share the
# machine's cores, as the cluster issue asks. Prints one JSON line per run and the ratio, and
# where the machine's CPU went during each load window (/proc: the whole machine busy, the
# server's processes, PostgreSQL, the load generator), in cores.
set -u
pairs=${1:-100} secs=${2:-10} pg=${3:-postgresql://postgres@127.0.0.1:5432}
here=$(cd "$(dirname "$0")" && pwd) bench=$(cd "$here/../../shared/bench" && pwd)
export NODE_PATH=${XDG_CACHE_HOME:-$HOME/.cache}/pocho-bench/node_modules
[ -d "$NODE_PATH" ] || { echo "run ../shared/bench/run once first (it installs the load generator)"; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 240); do curl -sf -o /dev/null "http://127.0.0.1:$1/$2" && return 0; sleep 0.5; done; return 1; }
export POCHO_ADMIN_KEY=bench-admin-key-0123456789 JWT_SECRET=bench-jwt-secret-0123456789abcdef0123456789
declare -A out
# Every 0.25 s until killed: the time, then jiffies used so far by the machine (all CPUs, not
# idle/iowait) and by the processes whose command line matches each pattern (`pgid:N`: the
# processes of that process group).
cpu_sampler() { exec python3 - "$@" <<'PY'
import os, re, sys, time
names = sys.argv[1:]
while True:
    fields = open("/proc/stat").readline().split()[1:]
    used = [sum(int(x) for x in fields) - int(fields[3]) - int(fields[4])] + [0] * len(names)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():  # its own command line names the patterns
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmd = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        jiffies = int(fields[11]) + int(fields[12])
        for i, name in enumerate(names):
            if name == f"pgid:{fields[2]}" or (not name.startswith("pgid:") and re.search(name, cmd)):
                used[i + 1] += jiffies
    print(time.time(), *used, flush=True)
    time.sleep(0.25)
PY
}
for workers in 1 2; do
  tag=$RANDOM$RANDOM db=pocho_workers_$tag
  psql "$pg/postgres" -qc "create database $db" >/dev/null || exit 1
  p=$(free_port) data=$(mktemp -d)
  env DATABASE_URL=$pg/$db REDIS_URL=redis://127.0.0.1:6379/15 PORT=$p POCHO_DATA_DIR=$data RATE_LIMIT_ENABLED=false \
    WORKERS=$workers LOG_LEVEL=WARNING setsid .venv/bin/pocho-rt serve --migrate --seed >"$data/server.log" 2>&1 & s=$!
  # every worker ready (each holds its shards) before the load starts
  if wait_up "$p" readyz && sleep 3 && wait_up "$p" readyz; then
    cpu_sampler "pgid:$s" "^postgres: .* $db " "load.js" "redis-server" >"$data/cpu" & sampler=$!
    out[$workers]=$(node "$bench/load.js" pocho "http://127.0.0.1:$p" "$pairs" "$secs")
    kill $sampler; wait $sampler 2>/dev/null
    # the last SECONDS of samples: load.js's measured window (its set-up, e.g. password
    # hashing for its accounts, comes before and is left out)
    python3 - "$data/cpu" "$secs" <<'PY'
import os, sys
rows = [[float(x) for x in line.split()] for line in open(sys.argv[1]) if line.strip()]
end = rows[-1]
start = min((r for r in rows if r[0] >= end[0] - float(sys.argv[2])), key=lambda r: r[0])
secs, hz = end[0] - start[0], os.sysconf("SC_CLK_TCK")
cores = [(b - a) / hz / secs for a, b in zip(start[1:], end[1:])]
names = ["machine busy", "server", "postgresql", "load generator", "redis"]
print("  cores used in the measured window: " + ", ".join(f"{n} {c:.2f}" for n, c in zip(names, cores)) + f" (of {os.cpu_count()})")
PY
  else
    out[$workers]='{"error":"server not ready"}'; tail -5 "$data/server.log"
  fi
  kill -TERM -$s 2>/dev/null; wait $s 2>/dev/null; rm -rf "$data"
  redis-cli -n 15 flushdb >/dev/null
  psql "$pg/postgres" -qc "drop database if exists $db with (force)" >/dev/null
  echo "workers=$workers: ${out[$workers]}"
done
python3 - "${out[1]}" "${out[2]}" <<'PY'
import json, sys
one, two = (json.loads(a) if a.startswith("{") else {} for a in sys.argv[1:3])
print(f"ratio: workers=2 / workers=1 {two.get('acks_per_s', 0) / max(1, one.get('acks_per_s', 0)):.2f}")
PY
