#!/bin/sh
# A demo producer for docker-compose: registers two dashboards' webhooks, then enqueues a
# status-change payload for each every few seconds, for ever.
#
# Runs in the herald image (HERALD_REDIS_URL and HERALD_SHARDS come from the environment).
# RECEIVER is the demo receiver's base URL; INTERVAL the seconds between rounds.
set -eu

RECEIVER="${RECEIVER:-http://receiver:8080}"
INTERVAL="${INTERVAL:-2}"

# Redis may still be starting: retry the first command.
until herald endpoint set demo-steady --url "$RECEIVER/hooks/demo-steady"; do
    echo "producer: waiting for Redis" >&2
    sleep 1
done
herald endpoint set demo-flaky --url "$RECEIVER/flaky/demo-flaky"

n=0
while true; do
    n=$((n + 1))
    case $((n % 3)) in
        0) last=up current=warn ;;
        1) last=warn current=down ;;
        *) last=down current=up ;;
    esac
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    payload=$(cat <<JSON
{"component_status_changes":[{"group_name":null,"name":"Apps","last_status":"$last","current_status":"$current"}],
 "component_statuses":[{"group_name":null,"name":"Apps","status":"$current"}],
 "current_status":"$current","details":"demo event $n","favicon_url":"https://example.com/favicon.ico",
 "home_page_url":"https://example.com","last_status":"$last","message":"Demo status change",
 "occurred_at":"$now","service_name":"Demo","slug":"demo","status_page_url":"https://status.example.com"}
JSON
)
    for dashboard in demo-steady demo-flaky; do
        printf '%s\n' "$payload" | herald enqueue "$dashboard" - >/dev/null
    done
    sleep "$INTERVAL"
done
