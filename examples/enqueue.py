#!/usr/bin/env python3
"""enqueue.py: a herald producer in Python, using the `redis` package (pip install redis).

Enqueues one JSON payload for one endpoint by running the shipped
crates/herald-store/scripts/enqueue-6.lua, exactly as the Rust producer does, then leaves a
wake-up hint for idle workers. The data model is described in docs/wire-format.md.

Usage: examples/enqueue.py ENDPOINT_ID FILE      (FILE may be - for standard input)

Environment (the same as examples/enqueue.sh):
  HERALD_REDIS_URL           Redis URL                         [redis://127.0.0.1:6379]
  HERALD_NAMESPACE           key prefix of the deployment      [herald]
  HERALD_SHARDS              shard count of the deployment     [16]
  HERALD_DELAY_MS            wait before the first attempt     [0]
  HERALD_IDEMPOTENCY_KEY     makes a repeated enqueue a no-op  [none]
  HERALD_IDEMPOTENCY_TTL_MS  how long that key is remembered   [86400000]
  HERALD_JOB_ID              job id to use                     [a fresh ULID]
  HERALD_ENQUEUE_SCRIPT      path of enqueue-6.lua             [the one in this repository]

Prints the job id on stdout. When the endpoint is disabled, the job is parked (it waits,
spending no attempt, until the endpoint is enabled) and a note goes to stderr. When the
idempotency key was already used, nothing is written and the first job's id is printed (with a
note on stderr).

Exit status: 0 enqueued, parked, or idempotency key already used; 1 Redis unreachable or failing;
2 input refused: bad arguments, payload not JSON, shard count mismatch, or the script's codes
-1 (unknown endpoint), -2 (duplicate job id), -3 (invalid argument).

The functions `shard_of`, `new_job_id` and `enqueue` can be imported and reused as they are.
"""

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

import redis

ENDPOINT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DEFAULT_SCRIPT = (
    Path(__file__).resolve().parent.parent / "crates/herald-store/scripts/enqueue-6.lua"
)


class Refused(Exception):
    """The input was refused (exit status 2)."""


class Failed(Exception):
    """Redis is unreachable or answered something unexpected (exit status 1)."""


def shard_of(endpoint_id: str, shards: int) -> int:
    """FNV-1a 32-bit of the endpoint id's bytes, modulo the shard count."""
    h = 0x811C9DC5
    for b in endpoint_id.encode():
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h % shards


def new_job_id() -> str:
    """A ULID: 48 bits of milliseconds, then 80 random bits, in 26 Crockford base32 digits."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def enqueue(
    r: "redis.Redis",
    endpoint_id: str,
    payload: bytes,
    *,
    namespace: str = "herald",
    shards: int = 16,
    job_id: "str | None" = None,
    delay_ms: int = 0,
    idempotency_key: str = "",
    idempotency_ttl_ms: int = 86_400_000,
    script_source: "str | None" = None,
) -> "tuple[str, str]":
    """Enqueues one job; returns (job id, status). status is "queued"; "parked" when the
    endpoint is disabled (the job waits until it is enabled); or "duplicate" when the
    idempotency key was already used: then nothing was written and the id is the first job's."""
    source = script_source or DEFAULT_SCRIPT.read_text()
    job_id = job_id or new_job_id()
    fmt = r.get(f"{namespace}:format")
    if fmt is not None and fmt != b"2":
        raise Refused(
            f"namespace {namespace!r} holds herald data of format {fmt.decode()};"
            " this producer writes format 2"
        )
    stored = r.hget(f"{namespace}:v2:meta", "shards")
    if stored is not None and int(stored) != shards:
        raise Refused(
            f"namespace {namespace!r} was created with {int(stored)} shards, not {shards}"
            f" (set HERALD_SHARDS={int(stored)})"
        )
    shard = shard_of(endpoint_id, shards)
    prefix = f"{namespace}:v2:{{{namespace}.{shard}}}"
    # register_script runs EVALSHA and falls back to loading the script on NOSCRIPT.
    script = r.register_script(source)
    reply = script(
        keys=[
            f"{prefix}:q:{endpoint_id}",
            f"{prefix}:jobs",
            f"{prefix}:endpoints",
            f"{prefix}:idem:{endpoint_id}/{idempotency_key}" if idempotency_key else f"{prefix}:idem:",
            f"{prefix}:disabled",
            f"{prefix}:ready",
        ],
        args=[job_id, endpoint_id, payload, delay_ms, idempotency_key, idempotency_ttl_ms],
    )
    code = reply[0] if isinstance(reply, list) and reply else None
    if code == 1 and len(reply) == 3:
        due_ms = int(reply[2])
        # The wake-up hint: without it the job is still picked up, at the workers' next poll.
        # For a job due at once, the endpoint is named first, so that the woken worker's first
        # claim leases the job.
        try:
            if delay_ms == 0:
                r.zadd(f"{namespace}:v2:wake:endpoints", {endpoint_id: 0})
            r.zadd(f"{namespace}:v2:wake", {str(shard): due_ms}, lt=True)
        except redis.RedisError as e:
            print(f"enqueue.py: warning: wake-up hint not written: {e}", file=sys.stderr)
        return reply[1].decode(), "queued"
    if code == 2 and len(reply) == 3:
        return reply[1].decode(), "parked"
    if code == 0 and len(reply) == 3:
        return reply[1].decode(), "duplicate"
    if code == -1:
        raise Refused(
            f"unknown endpoint {endpoint_id} (shard {shard} of namespace {namespace!r});"
            f" create it with: herald endpoint set {endpoint_id} --url URL"
        )
    if code == -2:
        raise Refused(f"job id {job_id} already exists")
    if code == -3:
        raise Refused(
            "invalid argument: enqueue-6.lua refused the job id, endpoint id, delay or payload"
        )
    raise Failed(f"unexpected reply from enqueue-6.lua: {reply!r}")


def env_int(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, "") or str(default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise Refused(f"{name} {text!r} must be a whole number from {low} to {high}")
    return int(text)


def main(argv: "list[str]") -> int:
    if len(argv) != 3:
        raise Refused("usage: examples/enqueue.py ENDPOINT_ID FILE   (FILE may be - for standard input)")
    endpoint_id, file = argv[1], argv[2]
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise Refused(
            f"endpoint id {endpoint_id!r} must be 1 to 128 characters of letters, digits and . _ - :"
        )
    url = os.environ.get("HERALD_REDIS_URL") or "redis://127.0.0.1:6379"
    namespace = os.environ.get("HERALD_NAMESPACE") or "herald"
    if len(namespace) > 64 or re.search(r"[{}\s]", namespace):
        raise Refused(f"HERALD_NAMESPACE {namespace!r} must be 1 to 64 characters without braces or whitespace")
    shards = env_int("HERALD_SHARDS", 16, 1, 4096)
    delay_ms = env_int("HERALD_DELAY_MS", 0, 0, 2**53)
    ttl_ms = env_int("HERALD_IDEMPOTENCY_TTL_MS", 86_400_000, 1, 2**53)
    idempotency_key = os.environ.get("HERALD_IDEMPOTENCY_KEY", "")
    if re.search(r"\s", idempotency_key):
        raise Refused("HERALD_IDEMPOTENCY_KEY must not contain whitespace")
    job_id = os.environ.get("HERALD_JOB_ID") or None
    if job_id is not None and not JOB_ID.fullmatch(job_id):
        raise Refused(f"HERALD_JOB_ID {job_id!r} must be 1 to 64 letters, digits, _ or -")
    script_path = Path(os.environ.get("HERALD_ENQUEUE_SCRIPT") or DEFAULT_SCRIPT)
    try:
        source = script_path.read_text()
    except OSError as e:
        raise Refused(f"cannot read the enqueue script {script_path} (set HERALD_ENQUEUE_SCRIPT): {e}")
    try:
        payload = (sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()).strip()
    except OSError as e:
        raise Refused(f"cannot read {file}: {e}")
    try:
        json.loads(payload)
    except ValueError as e:
        raise Refused(f"{file}: the payload is not valid JSON: {e}")

    r = redis.Redis.from_url(url)
    try:
        job, status = enqueue(
            r,
            endpoint_id,
            payload,
            namespace=namespace,
            shards=shards,
            job_id=job_id,
            delay_ms=delay_ms,
            idempotency_key=idempotency_key,
            idempotency_ttl_ms=ttl_ms,
            script_source=source,
        )
    except redis.ConnectionError as e:
        raise Failed(f"cannot reach Redis at HERALD_REDIS_URL: {e}")
    except redis.RedisError as e:
        raise Failed(f"redis: {e}")
    print(job)
    if status == "parked":
        print(
            f"enqueue.py: endpoint {endpoint_id} is disabled; the job is parked until it is enabled",
            file=sys.stderr,
        )
    elif status == "duplicate":
        print("enqueue.py: idempotency key already used; nothing enqueued, first job shown", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Refused as e:
        print(f"enqueue.py: {e}", file=sys.stderr)
        sys.exit(2)
    except Failed as e:
        print(f"enqueue.py: {e}", file=sys.stderr)
        sys.exit(1)
