#!/usr/bin/env bash
# Load test of the whole path (HTTP + sandbox) on loopback, bounded in time.
# Starts a release avap-host (standalone) on 127.0.0.1, then runs wrk for
# DURATION seconds against GET /health (the HTTP-only baseline) and against
# POST /api/v1/execute with a small script, in the same run, so the ratio
# holds on a noisy machine. Needs `wrk` (Debian package `wrk`).
#
#   benches/load.sh            # 10 s each, 16 connections, 2 threads
#   DURATION=30 CONNECTIONS=64 benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
PORT=${PORT:-18899}

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p avap-host
AVAP_STANDALONE=true AVAP_BIND=127.0.0.1 PORT=$PORT RUST_LOG=warn ./target/release/avap-host &
host=$!
trap 'kill $host 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

lua=$(mktemp)
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"script": "addVar(a, 1)\\naddResult(a)"}'
LUA

echo "== GET /health (HTTP only)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/health"
echo "== POST /api/v1/execute (addVar(a, 1) / addResult(a), one fresh sandbox per request)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$lua" "http://127.0.0.1:$PORT/api/v1/execute"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^avap_requests_total|^avap_rejects_total' || true
rm -f "$lua"
