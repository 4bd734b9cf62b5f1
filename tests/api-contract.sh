#!/usr/bin/env bash
# The API contract, checked against a live host: starts avap-host (debug
# build, standalone, on loopback), and runs schemathesis (PyPI) against its
# /openapi.json. Fails on any response that breaks the document and on any
# 5xx. The venv lives in target/venv-api, so later runs are offline.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
EXAMPLES="${API_CONTRACT_EXAMPLES:-100}"
venv=target/venv-api
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q --locked -p avap-host
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp "${TMPDIR:-/tmp}/avap-contract.XXXXXX")"
RUST_LOG=warn target/debug/avap-host --dev --standalone --bind 127.0.0.1 --port "$port" >"$log" 2>&1 &
host=$!
trap 'kill "$host" 2>/dev/null || true; wait "$host" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$host" 2>/dev/null || { cat "$log"; echo "avap-host exited" >&2; exit 1; }
    sleep 0.5
done

# From target/: schemathesis keeps its cache in the working directory.
cd target
"venv-api/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "$EXAMPLES" --seed 1 --no-color
