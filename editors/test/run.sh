#!/usr/bin/env bash
# Tests of the editor support (editors/): the TextMate grammar against sample
# lines, the interpreter's command table and every tests/cases script, and the
# VS Code extension's manifest. Needs node (20+) and npm; CI step "editor grammar".
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node --test grammar.test.mjs
