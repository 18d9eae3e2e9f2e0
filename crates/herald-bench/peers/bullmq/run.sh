#!/usr/bin/env bash
# The peer comparison: BullMQ 5 doing herald-bench's end-to-end work (JOBS webhook jobs for
# ENDPOINTS endpoints, POST of PAYLOAD bytes of JSON, acknowledge) against its own Redis and
# the same receiver herald-bench uses (`herald-bench receive`). Prints one JSON line.
#
#   cargo build --release -p herald -p herald-bench
#   crates/herald-bench/peers/bullmq/run.sh                 # JOBS=200000 CONCURRENCY=100
#   JOBS=50000 CONCURRENCY=100 crates/herald-bench/peers/bullmq/run.sh
#
# Needs node (20 or newer), npm, redis-server and redis-cli on PATH. Installs bullmq into
# node_modules/ here on first use. Everything listens on 127.0.0.1, on free ports (never 6379).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
bench="${HERALD_BENCH:-$root/target/release/herald-bench}"
export JOBS="${JOBS:-200000}" ENDPOINTS="${ENDPOINTS:-1000}" CONCURRENCY="${CONCURRENCY:-100}" \
    PAYLOAD="${PAYLOAD:-1024}"

if [ ! -x "$bench" ]; then
    echo "$bench not found: run cargo build --release -p herald-bench (or set HERALD_BENCH)" >&2
    exit 1
fi
if [ ! -d "$here/node_modules/bullmq" ]; then
    (cd "$here" && npm install --no-audit --no-fund >&2)
fi

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); })'
}

port="$(free_port)"
while [ "$port" = 6379 ]; do port="$(free_port)"; done
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory-policy noeviction --dir "$tmp" >"$tmp/redis.log" &
pids+=($!)
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done

"$bench" receive --expect "$JOBS" >"$tmp/receiver.url" &
pids+=($!)
for _ in $(seq 100); do
    [ -s "$tmp/receiver.url" ] && break
    sleep 0.05
done
receiver="$(head -n1 "$tmp/receiver.url")"

echo "bullmq: $JOBS jobs, $ENDPOINTS endpoints, concurrency $CONCURRENCY, Redis on $port," \
    "receiver $receiver" >&2
REDIS_PORT="$port" RECEIVER="$receiver" node "$here/bench.mjs"
