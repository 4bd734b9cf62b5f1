#!/usr/bin/env bash
# The API contract, checked against a live host: starts avap-host (debug
# build, standalone, on loopback), and runs schemathesis (PyPI) against its
# /openapi.json. Fails on any response that breaks the document, on any
# 5xx, and on a schema looser than what the API accepts (warnings listed in
# tests/api-contract.toml; tests/api_contract_hooks.py generates valid
# scripts for the `avap-script` format). Needs python3 (with venv: Debian's python3-venv) and cargo; no curl.
#
# The venv lives in target/venv-api, installed once with the versions of
# tests/api-contract-constraints.txt (reinstalled when that file changes),
# so later runs are offline.
#
#   API_CONTRACT_EXAMPLES   examples per operation (100)
#   API_CONTRACT_WAIT_SECS  how long to wait for the host's /readyz (60)
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${API_CONTRACT_EXAMPLES:-100}"
WAIT_SECS="${API_CONTRACT_WAIT_SECS:-60}"
ATTEMPTS=3
venv=target/venv-api
constraints=tests/api-contract-constraints.txt

# pip freeze of the venv, against the constraints without their comments.
pins() { grep -v '^#' "$1" | LC_ALL=C sort; }
want="$(sha256sum "$constraints" | cut -d' ' -f1)"
if [ "$(cat "$venv/.constraints" 2>/dev/null || true)" != "$want" ]; then
    if [ -x "$venv/bin/schemathesis" ] \
        && [ "$("$venv/bin/pip" freeze | LC_ALL=C sort)" = "$(pins "$constraints")" ]; then
        :  # made before the marker existed, and already what the file pins
    else
        rm -rf "$venv"
        python3 -m venv "$venv" || {
            echo "api-contract: python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        }
        "$venv/bin/pip" install -q --disable-pip-version-check --no-input -c "$constraints" schemathesis
    fi
    echo "$want" >"$venv/.constraints"
fi

cargo build -q --locked -p avap-host

log="$(mktemp "${TMPDIR:-/tmp}/avap-contract.XXXXXX")"
host=
cleanup() {
    if [ -n "$host" ]; then
        kill "$host" 2>/dev/null || true
        wait "$host" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT
show_log() {
    echo "--- avap-host log ($1) ---" >&2
    if [ "$1" = all ]; then cat "$log" >&2; else tail -n "$1" "$log" >&2; fi
    echo "--- end of avap-host log ---" >&2
}

# Waits for GET /readyz to answer 200: exit 0 ready, 2 the host exited,
# 1 no answer within WAIT_SECS.
wait_ready() {
    python3 - "$1" "$2" "$WAIT_SECS" <<'PY'
import os, sys, time, urllib.request

port, pid, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def exited():
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:  # refused, reset, timeout, or an HTTP error such as 503
        pass
    if exited():
        sys.exit(2)
    time.sleep(0.25)
sys.exit(1)
PY
}

# A free port, then the host on it. Between the two another process may
# take the port: then the host exits with "Address already in use", and
# this tries again on another port.
for attempt in $(seq 1 "$ATTEMPTS"); do
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    : >"$log"
    RUST_LOG=warn target/debug/avap-host --dev --standalone --bind 127.0.0.1 --port "$port" >"$log" 2>&1 &
    host=$!
    status=0
    wait_ready "$port" "$host" || status=$?
    case "$status" in
        0) break ;;
        2)
            code=0
            wait "$host" || code=$?
            host=
            if grep -q "Address already in use" "$log" && [ "$attempt" -lt "$ATTEMPTS" ]; then
                echo "api-contract: port $port was taken before avap-host bound it; another port (attempt $((attempt + 1)) of $ATTEMPTS)" >&2
                continue
            fi
            show_log all
            echo "api-contract: avap-host exited (status $code) before /readyz answered 200 on port $port" >&2
            exit 1
            ;;
        *)
            show_log all
            echo "api-contract: avap-host did not answer 200 on http://127.0.0.1:$port/readyz within ${WAIT_SECS}s" >&2
            exit 1
            ;;
    esac
done

# From target/: schemathesis keeps its cache in the working directory.
cd target
status=0
SCHEMATHESIS_HOOKS=../tests/api_contract_hooks.py "venv-api/bin/schemathesis" --config-file ../tests/api-contract.toml \
    run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --max-examples "$EXAMPLES" --seed 1 --no-color || status=$?
if [ "$status" -ne 0 ]; then
    show_log 100
    echo "api-contract: schemathesis failed (status $status); the host's log tail is above" >&2
    exit "$status"
fi
