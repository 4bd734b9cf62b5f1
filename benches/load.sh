#!/usr/bin/env bash
# What a request and a start cost, as ratios to a bare server measured in
# the same run (see ../shared/notes/MEASURING.md). Release builds on
# 127.0.0.1, wrk on the same cores, ROUNDS interleaved rounds:
#
#   bare      an axum server that only parses the JSON body and answers a
#             constant (benches/bare.rs): the machine's HTTP limit
#   default   avap-host standalone as users run it: log level info, one
#             access line per request
#   quiet     the same with RUST_LOG=warn (no access line)
#   synced    avap-host following a local avap-brain that serves its catalog
#             plus 100 catalog commands written in AVAP (log level info)
#
# Two loads, each request `POST /api/v1/execute?name=Benchmark` with body
# {"script": S, "variables": {"nombre": "Tester", "level": 7}}:
#   trivial  S = "addVar(a, 1)\naddResult(a)"
#   mix      S cycling through the five scripts of the original's benchmark
#
# For each server and load: requests/s, p50, p99 and the server's CPU time
# per request (utime+stime from /proc/PID/stat around the measured run);
# medians over the rounds and each host figure against bare's. Then:
#   start    process start to /readyz 200, standalone, with no compiled
#            guest kept (cold) and with the host's own artifacts (warm)
#   roll-out benches/swap.sh: publish to the first request served by the
#            new guest under load, and failed requests
#
# Needs wrk (Debian package `wrk`), curl and python3.
#
#   benches/load.sh                                  # c=50, 10 s, 3 rounds
#   DURATION=20 CONNECTIONS=50 ROUNDS=3 benches/load.sh
#   SKIP_SWAP=1 benches/load.sh                      # without the roll-out row
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
STARTS=${STARTS:-5}
BASE_PORT=${BASE_PORT:-18870}
BARE_PORT=$BASE_PORT
DEFAULT_PORT=$((BASE_PORT + 1))
QUIET_PORT=$((BASE_PORT + 2))
SYNCED_PORT=$((BASE_PORT + 3))
BRAIN_PORT=$((BASE_PORT + 4))
START_PORT=$((BASE_PORT + 5))

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p avap-host -p avap-brain -p avap-benches --bin avap-host --bin avap-brain --bin bare-server
bin=./target/release

. benches/common.sh
work_dir load

# 100 catalog commands written in AVAP, beside the brain's 28 entries.
mkdir -p "$work/catalog"
for i in $(seq -w 1 100); do
    printf 'function bench%s(a) {\n  return a + %d\n}\n' "$i" "$((10#$i))" > "$work/catalog/bench$i.avap"
done

# Every host keeps its compiled guests in a folder of this run.
host_env=(AVAP_DEV=true AVAP_BIND=127.0.0.1 AVAP_CACHE_DIR="$work/artifacts")
RUST_LOG=warn "$bin/bare-server" "$BARE_PORT" & pids+=($!); bare=$!
RUST_LOG=warn AVAP_DEV=true "$bin/avap-brain" --listen "127.0.0.1:$BRAIN_PORT" --catalog "$work/catalog" >/dev/null & pids+=($!)
env "${host_env[@]}" PORT=$DEFAULT_PORT "$bin/avap-host" >/dev/null & pids+=($!); default=$!
env "${host_env[@]}" RUST_LOG=warn PORT=$QUIET_PORT "$bin/avap-host" >/dev/null & pids+=($!); quiet=$!
env "${host_env[@]}" BRAIN_HOST=127.0.0.1 BRAIN_PORT=$BRAIN_PORT PORT=$SYNCED_PORT "$bin/avap-host" >/dev/null & pids+=($!); synced=$!

wait_for() { # url, what
    for _ in $(seq 1 300); do curl -sf "$1" -o /dev/null -H 'content-type: application/json' "${@:3}" && return 0; sleep 0.1; done
    echo "$2 did not come up" >&2; exit 1
}
wait_for "http://127.0.0.1:$DEFAULT_PORT/readyz" "the default host"
wait_for "http://127.0.0.1:$QUIET_PORT/readyz" "the quiet host"
wait_for "http://127.0.0.1:$SYNCED_PORT/health" "the synced host"
wait_for "http://127.0.0.1:$BARE_PORT/api/v1/execute" "the bare server" -d '{}'
wait_synced $SYNCED_PORT

cat > "$work/trivial.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"script": "addVar(a, 1)\\naddResult(a)", "variables": {"nombre": "Tester", "level": 7}}'
LUA
cat > "$work/mix.lua" <<'LUA'
local scripts = {
  "addParam(n, 'Rafa')\\naddResult(n)",
  "function calc(a){ return a * 1.21 }\\nval = calc(100)\\naddResult(val)",
  "x = 50 + 50\\ny = x / 2\\naddResult(y)",
  "msg = 'Status: ' + 'Active'\\naddResult(msg)",
  "if(1, 1, '=')\\n  addParam(status, 'OK')\\nend()\\naddResult(status)",
}
local bodies = {}
for i, s in ipairs(scripts) do
  bodies[i] = '{"script": "' .. s .. '", "variables": {"nombre": "Tester", "level": 7}}'
end
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[n])
end
LUA

# Every script of the mix must answer 200 before anything is measured.
for port in $DEFAULT_PORT $QUIET_PORT $SYNCED_PORT; do
    for s in "addParam(n, 'Rafa')\naddResult(n)" "function calc(a){ return a * 1.21 }\nval = calc(100)\naddResult(val)" \
             "x = 50 + 50\ny = x / 2\naddResult(y)" "msg = 'Status: ' + 'Active'\naddResult(msg)" \
             "if(1, 1, '=')\n  addParam(status, 'OK')\nend()\naddResult(status)"; do
        code=$(curl -s -o "$work/out" -w '%{http_code}' -H 'content-type: application/json' \
            "http://127.0.0.1:$port/api/v1/execute?name=Benchmark" -d "{\"script\": \"$s\"}")
        [ "$code" = 200 ] || { echo "script answered $code on port $port: $s: $(cat "$work/out")" >&2; exit 1; }
    done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # name pid port load round
    local url="http://127.0.0.1:$3/api/v1/execute?name=Benchmark"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 10s -s "$work/$4.lua" "$url" >/dev/null
    local t0 t1 out
    t0=$(ticks "$2")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency -s "$work/$4.lua" "$url")
    t1=$(ticks "$2")
    printf '%s\n' "$out" > "$work/wrk-$1-$4-$5.txt"
    echo "$1 $4 $5 $((t1 - t0))" >> "$work/runs.txt"
    echo "round $5 $4 $1: $(grep -E 'Requests/sec' <<<"$out" | tr -s ' ')" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    for load in trivial mix; do
        measure bare "$bare" "$BARE_PORT" "$load" "$round"
        measure default "$default" "$DEFAULT_PORT" "$load" "$round"
        measure quiet "$quiet" "$QUIET_PORT" "$load" "$round"
        measure synced "$synced" "$SYNCED_PORT" "$load" "$round"
    done
done

# Start to ready: a fresh process each time, standalone, log level info.
start_ms() { # cache-dir
    local t0 t1 pid
    t0=$(date +%s%N)
    env AVAP_DEV=true AVAP_BIND=127.0.0.1 AVAP_CACHE_DIR="$1" PORT=$START_PORT "$bin/avap-host" >/dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$START_PORT/readyz" -o /dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "the host exited before it was ready" >&2; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo $(( (t1 - t0) / 1000000 ))
}
for i in $(seq 1 "$STARTS"); do
    echo "cold $(start_ms "$work/cold-$i")" >> "$work/starts.txt"   # an empty folder each time
done
start_ms "$work/warm" >/dev/null                                   # fills it once
for i in $(seq 1 "$STARTS"); do
    echo "warm $(start_ms "$work/warm")" >> "$work/starts.txt"
done

python3 - "$work" <<'PY'
import re, statistics, sys
work = sys.argv[1]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rows = {}
for line in open(f"{work}/runs.txt"):
    name, load, rnd, ticks = line.split()
    text = open(f"{work}/wrk-{name}-{load}-{rnd}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    n = int(re.search(r"(\d+) requests in", text).group(1))
    p50 = ms(*re.search(r"\s50%\s+([\d.]+)(us|ms|s)", text).groups())
    p99 = ms(*re.search(r"\s99%\s+([\d.]+)(us|ms|s)", text).groups())
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    cpu_us = int(ticks) * 10000 / n if n else 0
    rows.setdefault((load, name), []).append((rps, p50, p99, cpu_us, int(bad.group(1)) if bad else 0))
print()
print("| load | server | requests/s | p50 ms | p99 ms | CPU us/request | non-2xx | rps vs bare | CPU vs bare | p99 vs bare |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for load in ("trivial", "mix"):
    med = {}
    for name in ("bare", "default", "quiet", "synced"):
        r = rows.get((load, name), [])
        if r:
            med[name] = [statistics.median(x[i] for x in r) for i in range(4)] + [sum(x[4] for x in r)]
    b = med["bare"]
    for name, (rps, p50, p99, cpu, bad) in med.items():
        ratio = "- | - | -" if name == "bare" else f"{rps / b[0]:.0%} | {cpu / b[3]:.2f}x | {p99 / b[2]:.2f}x"
        print(f"| {load} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {bad} | {ratio} |")
starts = {}
for line in open(f"{work}/starts.txt"):
    kind, value = line.split()
    starts.setdefault(kind, []).append(int(value))
print()
print("| start to /readyz 200 (standalone) | median ms | runs (ms) |")
print("| --- | --- | --- |")
for kind, label in (("cold", "cold: nothing compiled kept"), ("warm", "warm: the host's own artifacts")):
    values = starts.get(kind, [])
    print(f"| {label} | {statistics.median(values):.0f} | {', '.join(map(str, values))} |")
print()
print("Medians of the rounds; each round measured the servers in turn, so the ratios hold on a noisy machine.")
PY

if [ -z "${SKIP_SWAP:-}" ]; then
    cleanup
    trap - EXIT
    echo
    BASE_PORT=$((BASE_PORT + 10)) bash benches/swap.sh
fi
