# Shared by load.sh and swap.sh (sourced, not run): a scratch folder whose
# processes are stopped and which is removed on exit, and the wait for a
# host to take its catalog from the brain.

# work_dir NAME: sets $work to a new scratch folder and starts $pids, the
# processes to stop on exit.
work_dir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/avap-$1.XXXXXX")
    pids=()
    trap cleanup EXIT
}

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# wait_synced PORT: until the host on PORT serves the brain's catalog (30 s).
wait_synced() {
    for _ in $(seq 1 300); do
        curl -s "http://127.0.0.1:$1/health" | grep -q '"source":"brain"' && return 0
        sleep 0.1
    done
    echo "the host on port $1 never synced from the brain" >&2
    exit 1
}
