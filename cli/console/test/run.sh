#!/usr/bin/env bash
# Tests of the console of `avap dev` (cli/console/): the highlighter against
# VS Code's TextMate engine, then the page in headless Chromium against a real
# `avap dev` (console.test.mjs), with a screenshot of each step under
# target/console-screenshots/. Needs node (20+), npm and Debian's chromium
# (`apt-get install chromium`; no browser is downloaded). CI step "console in
# a browser". AVAP_BIN names the avap to test (default target/debug/avap,
# built if missing); CHROMIUM the browser (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")"
repo="$(cd ../../.. && pwd)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "no browser at $CHROMIUM: apt-get install chromium (or set CHROMIUM)" >&2
  exit 2
fi
export AVAP_BIN="${AVAP_BIN:-$repo/target/debug/avap}"
if [ ! -x "$AVAP_BIN" ]; then
  (cd "$repo" && cargo build -p avap-cli --locked)
fi
export SCREENSHOTS="${SCREENSHOTS:-$repo/target/console-screenshots}"
rm -rf "$SCREENSHOTS"
npm ci --no-audit --no-fund
node --test highlight.test.mjs console.test.mjs
