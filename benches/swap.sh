#!/usr/bin/env bash
# How long a guest roll-out takes, from publish to the first request the new
# guest serves, on a host under load (release builds on 127.0.0.1).
#
# A local avap-brain watches a catalog folder (polled every POLL_MS); an
# avap-host follows it over WatchCatalog, with a compile cache of its own,
# empty at the start (AVAP_CACHE_DIR in the scratch folder: nothing compiled
# by an earlier run is found). While wrk keeps CONNECTIONS connections busy
# with a trivial script, the built-in guest module with its version record
# patched (0.1.0 -> 0.1.1, the same code) is written into the folder as
# guest-vm.wasm, after its precompiled artifact (`avap precompile --dev`:
# guest-vm.cwasm and its .sig; PRECOMPILE=0 rolls out the module alone).
# The clock starts when the first file is copied. The script then polls the
# host every 5 ms and reports the time until a response names the new
# version in x-avap-guest-version, the time until the host runs it prepared
# (its snapshot compiled, /health), whether the host took the precompiled
# artifact, and wrk's count of failed requests over the whole roll-out
# (must be 0).
#
# The patched modules have the built-in's code, which the host compiled at
# its start: with PRECOMPILE=0 Cranelift's in-memory cache of compiled
# functions makes their compile (and every snapshot's) faster than a new
# interpreter's would be.
#
#   benches/swap.sh                   # 3 roll-outs, c=8, brain poll 100 ms
#   ROLLOUTS=5 CONNECTIONS=50 benches/swap.sh
#   PRECOMPILE=0 benches/swap.sh      # the module alone: the host compiles it
set -euo pipefail
cd "$(dirname "$0")/.."
ROLLOUTS=${ROLLOUTS:-3}
CONNECTIONS=${CONNECTIONS:-8}
POLL_MS=${POLL_MS:-100}
PRECOMPILE=${PRECOMPILE:-1}
BASE_PORT=${BASE_PORT:-18880}
HOST_PORT=$BASE_PORT
BRAIN_PORT=$((BASE_PORT + 1))

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p avap-host -p avap-brain -p avap-cli --bin avap-host --bin avap-brain --bin avap
bin=./target/release
module=$(ls -t target/release/build/avap-guest-embed-*/out/avap_guest_vm.wasm | head -1)

. benches/common.sh
work_dir swap
mkdir -p "$work/catalog"

# Versions 0.1.1, 0.1.2, ...: the same module with another version record.
patched() { # n -> path
    python3 - "$module" "$work/guest-$1.wasm" "$1" <<'PY'
import sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
old = b"avap-guest-version=0.1.0"
assert data.count(old) == 1, "the version record must occur once"
new = b"avap-guest-version=0.1." + str(n).encode()
assert len(new) == len(old), "a version of the same length"
open(dst, "wb").write(data.replace(old, new))
PY
    if [ "$PRECOMPILE" = 1 ]; then
        "$bin/avap" precompile --dev "$work/guest-$1.wasm" 2>/dev/null
    fi
    echo "$work/guest-$1.wasm"
}

RUST_LOG=warn AVAP_DEV=true "$bin/avap-brain" --listen "127.0.0.1:$BRAIN_PORT" --catalog "$work/catalog" \
    --poll-ms "$POLL_MS" >"$work/brain.log" 2>&1 & pids+=($!)
RUST_LOG=info AVAP_DEV=true BRAIN_HOST=127.0.0.1 BRAIN_PORT=$BRAIN_PORT AVAP_BIND=127.0.0.1 PORT=$HOST_PORT \
    AVAP_CACHE_DIR="$work/cache" "$bin/avap-host" >"$work/host.log" 2>&1 & pids+=($!)
url="http://127.0.0.1:$HOST_PORT/api/v1/execute"
wait_synced $HOST_PORT

cat > "$work/trivial.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"script": "addVar(a, 1)\\naddResult(a)"}'
LUA

version_now() {
    curl -s -D - -o /dev/null -H 'content-type: application/json' "$url" -d '{"script": "addVar(a, 1)"}' \
        | tr -d '\r' | awk -F': ' 'tolower($1) == "x-avap-guest-version" { print $2 }'
}

# prepared_at VERSION: the time (ns) when /health first shows VERSION
# running prepared (a snapshot), within 30 s; then whether it came from the
# precompiled artifact.
prepared_at() {
    python3 - "http://127.0.0.1:$HOST_PORT/health" "$1" <<'PY'
import json, sys, time, urllib.request
url, version = sys.argv[1], sys.argv[2]
deadline = time.time() + 30
while time.time() < deadline:
    guest = json.load(urllib.request.urlopen(url))["guest"]
    if guest["version"] == version and guest.get("snapshot"):
        print(time.time_ns(), "yes" if guest.get("precompiled") else "no")
        sys.exit(0)
    time.sleep(0.01)
sys.exit("version %s never ran prepared" % version)
PY
}

printf '| roll-out | version | publish to first request served | publish to prepared | precompiled artifact taken | failed requests under load |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for n in $(seq 1 "$ROLLOUTS"); do
    next="0.1.$n"
    src=$(patched "$n")
    wrk -t2 -c"$CONNECTIONS" -d10s --timeout 10s -s "$work/trivial.lua" "$url" > "$work/wrk-$n.txt" &
    load=$!
    sleep 3
    start=$(date +%s%N)
    if [ "$PRECOMPILE" = 1 ]; then
        for f in cwasm cwasm.sig; do
            cp "${src%.wasm}.$f" "$work/catalog/guest-vm.$f.tmp" && mv "$work/catalog/guest-vm.$f.tmp" "$work/catalog/guest-vm.$f"
        done
    fi
    cp "$src" "$work/catalog/guest-vm.wasm.tmp" && mv "$work/catalog/guest-vm.wasm.tmp" "$work/catalog/guest-vm.wasm"
    served=""
    for _ in $(seq 1 4000); do
        if [ "$(version_now)" = "$next" ]; then served=$(date +%s%N); break; fi
        sleep 0.005
    done
    [ -n "$served" ] || { echo "version $next was never served" >&2; tail -20 "$work/host.log" >&2; exit 1; }
    read -r prepared taken < <(prepared_at "$next") || { tail -20 "$work/host.log" >&2; exit 1; }
    wait "$load"
    failed=$(grep -oE 'Non-2xx or 3xx responses: [0-9]+' "$work/wrk-$n.txt" | awk '{print $NF}' || true)
    errors=$(grep -oE 'Socket errors: .*' "$work/wrk-$n.txt" || true)
    printf '| %d | %s | %d ms | %d ms | %s | %s%s |\n' "$n" "$next" $(( (served - start) / 1000000 )) \
        $(( (prepared - start) / 1000000 )) "$taken" "${failed:-0}" "${errors:+, $errors}"
done
