#!/bin/bash
# Container health check for Switchboard (deploy/Dockerfile's HEALTHCHECK): GET /healthz on the
# daemon's own port and succeed on a 200. Plain bash (/dev/tcp), so the runtime image needs no
# curl. .ci/deploy-checks runs it against a live daemon.
#
#   switchboard-healthcheck [HOST:PORT] [PATH]
#
# HOST:PORT defaults to 127.0.0.1 and the port of $SWITCHBOARD_HTTP__LISTEN (8080 without it);
# PATH defaults to /healthz (/readyz asks whether the daemon takes work).
set -euo pipefail

listen=${SWITCHBOARD_HTTP__LISTEN:-127.0.0.1:8080}
addr=${1:-127.0.0.1:${listen##*:}}
path=${2:-/healthz}
host=${addr%:*}
port=${addr##*:}

if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
  echo "unhealthy: nothing listens on $addr" >&2
  exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3<&-
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "unhealthy: GET $path on $addr answered: ${status%$'\r'}" >&2
exit 1
