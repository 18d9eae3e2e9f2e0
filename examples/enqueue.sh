#!/bin/sh
# enqueue.sh: a herald producer in POSIX shell, using nothing but redis-cli.
#
# Enqueues one JSON payload for one endpoint by running the shipped
# crates/herald-store/scripts/enqueue-6.lua, exactly as the Rust producer does, then leaves a
# wake-up hint for idle workers. The data model is described in docs/wire-format.md.
#
# Usage: examples/enqueue.sh ENDPOINT_ID FILE      (FILE may be - for standard input)
#
# Environment:
#   HERALD_REDIS_URL           Redis URL                         [redis://127.0.0.1:6379]
#   HERALD_NAMESPACE           key prefix of the deployment      [herald]
#   HERALD_SHARDS              shard count of the deployment     [16]
#   HERALD_DELAY_MS            wait before the first attempt     [0]
#   HERALD_IDEMPOTENCY_KEY     makes a repeated enqueue a no-op  [none]
#   HERALD_IDEMPOTENCY_TTL_MS  how long that key is remembered   [86400000]
#   HERALD_JOB_ID              job id to use                     [a fresh ULID]
#   HERALD_ENQUEUE_SCRIPT      path of enqueue-6.lua             [the one in this repository]
#
# Prints the job id on stdout. When the endpoint is disabled, the job is parked (it waits,
# spending no attempt, until the endpoint is enabled) and a note goes to stderr. When the
# idempotency key was already used, nothing is written and the first job's id is printed (with
# a note on stderr).
#
# Exit status: 0 enqueued, parked, or idempotency key already used; 1 Redis unreachable or failing;
# 2 input refused: bad arguments, shard count mismatch, or the script's codes
# -1 (unknown endpoint), -2 (duplicate job id), -3 (invalid argument).
#
# Limits of a shell producer: the payload is not checked to be JSON (a worker discards a job
# whose payload is not JSON into the dead-letter store, reason "malformed"), and it travels as
# one command-line argument, which Linux caps at 128 KiB. examples/enqueue.py has neither limit.

set -u
LC_ALL=C
export LC_ALL

me=enqueue.sh

die() {
    code=$1
    shift
    printf '%s: %s\n' "$me" "$*" >&2
    exit "$code"
}

[ $# -eq 2 ] || die 2 "usage: examples/enqueue.sh ENDPOINT_ID FILE   (FILE may be - for standard input)"
endpoint=$1
file=$2

url=${HERALD_REDIS_URL:-redis://127.0.0.1:6379}
ns=${HERALD_NAMESPACE:-herald}
shards=${HERALD_SHARDS:-16}
delay_ms=${HERALD_DELAY_MS:-0}
idem=${HERALD_IDEMPOTENCY_KEY:-}
idem_ttl_ms=${HERALD_IDEMPOTENCY_TTL_MS:-86400000}
job_id=${HERALD_JOB_ID:-}
here=$(dirname -- "$0")
script=${HERALD_ENQUEUE_SCRIPT:-$here/../crates/herald-store/scripts/enqueue-6.lua}

# ----- check the input before talking to Redis -----

case $endpoint in
    '' | *[!A-Za-z0-9._:-]*)
        die 2 "endpoint id '$endpoint' must be 1 to 128 characters of letters, digits and . _ - :" ;;
esac
[ ${#endpoint} -le 128 ] || die 2 "endpoint id is longer than 128 characters"

case $ns in
    '' | *[{}]* | *[[:space:]]*)
        die 2 "HERALD_NAMESPACE '$ns' must be 1 to 64 characters without braces or whitespace" ;;
esac
[ ${#ns} -le 64 ] || die 2 "HERALD_NAMESPACE is longer than 64 characters"

is_uint() {
    case $1 in '' | *[!0-9]*) return 1 ;; esac
    [ ${#1} -le 15 ]
}
is_uint "$shards" && [ "$shards" -ge 1 ] && [ "$shards" -le 4096 ] ||
    die 2 "HERALD_SHARDS '$shards' must be a whole number from 1 to 4096"
is_uint "$delay_ms" || die 2 "HERALD_DELAY_MS '$delay_ms' must be a whole number of milliseconds"
is_uint "$idem_ttl_ms" && [ "$idem_ttl_ms" -ge 1 ] ||
    die 2 "HERALD_IDEMPOTENCY_TTL_MS '$idem_ttl_ms' must be a positive whole number of milliseconds"
case $idem in
    *[[:space:]]*) die 2 "HERALD_IDEMPOTENCY_KEY must not contain whitespace" ;;
esac
if [ -n "$job_id" ]; then
    case $job_id in
        *[!0-9A-Za-z_-]*) die 2 "HERALD_JOB_ID '$job_id' may only contain letters, digits, _ and -" ;;
    esac
    [ ${#job_id} -le 64 ] || die 2 "HERALD_JOB_ID is longer than 64 characters"
fi

[ -r "$script" ] || die 2 "cannot read the enqueue script $script (set HERALD_ENQUEUE_SCRIPT)"
command -v redis-cli >/dev/null 2>&1 || die 1 "redis-cli is not installed"

if [ "$file" = - ]; then
    payload=$(cat) || die 2 "cannot read standard input"
else
    [ -f "$file" ] && [ -r "$file" ] || die 2 "cannot read $file"
    payload=$(cat -- "$file") || die 2 "cannot read $file"
fi
[ -n "$payload" ] || die 2 "the payload is empty"
# One argv string holds at most 128 KiB on Linux (MAX_ARG_STRLEN), its final NUL included.
[ ${#payload} -lt 131072 ] ||
    die 2 "the payload is ${#payload} bytes; a command-line argument holds less than 128 KiB (use examples/enqueue.py)"

# ----- the shard: FNV-1a 32-bit of the endpoint id's bytes, modulo the shard count -----

fnv1a32() {
    h=2166136261
    rest=$1
    while [ -n "$rest" ]; do
        c=${rest%"${rest#?}"}
        rest=${rest#?}
        b=$(printf '%d' "'$c")
        h=$(( ((h ^ b) * 16777619) & 4294967295 ))
    done
    echo "$h"
}
# The product needs 56 bits; POSIX only promises a signed long. Refuse a narrower shell.
[ "$(fnv1a32 foobar)" = 3214735720 ] || die 1 "this shell's arithmetic is narrower than 64 bits"
shard=$(( $(fnv1a32 "$endpoint") % shards ))

# ----- Redis -----

rcli() {
    redis-cli --no-auth-warning --raw -u "$url" "$@" 2>&1
}

# The namespace records its key format on first use: jobs written in another format are never
# read by its workers.
if ! out=$(rcli GET "$ns:format"); then
    die 1 "cannot reach Redis at HERALD_REDIS_URL: $out"
fi
case $out in
    '' | 2) ;; # not recorded yet, or format 2: this script's
    *) die 2 "namespace '$ns' holds herald data of format $out; this script writes format 2" ;;
esac

# The deployment records its shard count on first use; a producer with another count would
# put jobs where no endpoint and no worker looks for them.
if ! out=$(rcli HGET "$ns:v2:meta" shards); then
    die 1 "cannot reach Redis at HERALD_REDIS_URL: $out"
fi
case $out in
    '') ;; # not recorded yet: the first herald command (e.g. `herald endpoint set`) records it
    *[!0-9]*) die 1 "unexpected reply from Redis: $out" ;;
    "$shards") ;;
    *) die 2 "namespace '$ns' was created with $out shards, not $shards (set HERALD_SHARDS=$out)" ;;
esac

alphabet=0123456789ABCDEFGHJKMNPQRSTVWXYZ # Crockford base32, as in ULIDs

# Appends the base32 digit of $1 (0..31) to $job_id.
append_digit() {
    digits=$alphabet
    i=$1
    while [ "$i" -gt 0 ]; do
        digits=${digits#?}
        i=$((i - 1))
    done
    job_id=$job_id${digits%"${digits#?}"}
}

if [ -z "$job_id" ]; then
    # A ULID: 48 bits of milliseconds (from the Redis clock, as POSIX `date` has no
    # milliseconds), then 80 random bits, in 26 base32 digits.
    out=$(rcli TIME) || die 1 "cannot reach Redis at HERALD_REDIS_URL: $out"
    set -f
    # shellcheck disable=SC2086 # split the two lines of TIME on purpose
    set -- $out
    set +f
    is_uint "${1:-}" && is_uint "${2:-}" || die 1 "unexpected reply from Redis TIME: $out"
    ms=$(( $1 * 1000 + $2 / 1000 ))
    n=9
    while [ "$n" -ge 0 ]; do
        append_digit $(( (ms >> (5 * n)) & 31 ))
        n=$((n - 1))
    done
    random=$(od -An -N16 -tu1 /dev/urandom) || die 1 "cannot read /dev/urandom"
    for byte in $random; do
        append_digit $(( byte & 31 ))
    done
    [ ${#job_id} -eq 26 ] || die 1 "could not generate a job id"
fi

prefix="$ns:v2:{$ns.$shard}"
# Idempotency keys are per endpoint; without one, the placeholder key is never touched.
if [ -n "$idem" ]; then idem_key="$prefix:idem:$endpoint/$idem"; else idem_key="$prefix:idem:"; fi
if ! out=$(rcli EVAL "$(cat -- "$script")" 6 \
    "$prefix:q:$endpoint" "$prefix:jobs" "$prefix:endpoints" "$idem_key" \
    "$prefix:disabled" "$prefix:ready" \
    "$job_id" "$endpoint" "$payload" "$delay_ms" "$idem" "$idem_ttl_ms"); then
    die 1 "cannot reach Redis at HERALD_REDIS_URL: $out"
fi

# The reply, one element a line: {1, job id, due_ms}, {2, job id, 0}, {0, first job id, 0}
# or {code}.
set -f
# shellcheck disable=SC2086 # split the reply's lines on purpose
set -- $out
set +f
case ${1:-} in
    1)
        due_ms=${3:-}
        is_uint "$due_ms" || die 1 "unexpected reply from enqueue-6.lua: $out"
        # The wake-up hint: without it the job is still picked up, at the workers' next poll.
        # For a job due at once, the endpoint is named first, so that the woken worker's first
        # claim leases the job.
        if [ "$delay_ms" -eq 0 ]; then
            rcli ZADD "$ns:v2:wake:endpoints" 0 "$endpoint" >/dev/null || true
        fi
        hint=$(rcli ZADD "$ns:v2:wake" LT "$due_ms" "$shard")
        is_uint "$hint" || printf '%s: warning: wake-up hint not written: %s\n' "$me" "$hint" >&2
        printf '%s\n' "$2"
        ;;
    2)
        printf '%s\n' "$2"
        printf '%s: endpoint %s is disabled; the job is parked until it is enabled\n' "$me" "$endpoint" >&2
        ;;
    0)
        printf '%s\n' "$2"
        printf '%s: idempotency key already used; nothing enqueued, first job shown\n' "$me" >&2
        ;;
    -1) die 2 "unknown endpoint $endpoint (shard $shard of namespace '$ns'); create it with: herald endpoint set $endpoint --url URL" ;;
    -2) die 2 "job id $job_id already exists" ;;
    -3) die 2 "invalid argument: enqueue-6.lua refused the job id, endpoint id, delay or payload" ;;
    *) die 1 "unexpected reply from enqueue-6.lua: $out" ;;
esac
