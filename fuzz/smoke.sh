#!/usr/bin/env bash
# Builds every fuzz target, then runs each for FUZZ_SECONDS (default 30) on a
# scratch copy of its committed seed corpus. Prints one line per target and
# exits non-zero if any target crashed (artifacts land in fuzz/artifacts/).
set -euo pipefail

cd "$(dirname "$0")"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
    echo "error: no nightly toolchain (cargo fuzz needs one): rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it" >&2
    cargo +nightly install cargo-fuzz --locked
fi

cargo +nightly fuzz build -O

scratch="$(mktemp -d "${TMPDIR:-/tmp}/avap-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# One in-process fuzzer per target, one after the other: no -jobs/-workers
# (with them libFuzzer forks a child and writes fuzz-N.log into the cwd) and
# never -fork.
failed=0
for target in $(cargo +nightly fuzz list); do
    corpus="$scratch/corpus/$target"
    mkdir -p "$corpus" artifacts/"$target"
    if [ -d "corpus/$target" ]; then
        cp -R "corpus/$target/." "$corpus/"
    fi
    log="$scratch/$target.log"
    status=ok
    if ! cargo +nightly fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=CRASH
        failed=1
    fi
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    printf '%-16s %-5s executions=%-10s exec/s=%s\n' "$target" "$status" "${execs:-?}" "${rate:-?}"
    if [ "$status" != ok ]; then
        echo "---- $target (last 40 lines of its log) ----"
        tail -n 40 "$log"
        echo "----"
    fi
done

exit "$failed"
