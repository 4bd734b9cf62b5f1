#!/usr/bin/env bash
# The Neovim recipe of editors/README.md, run as it is written: the first
# ```lua block under "## Neovim" becomes the init file of a headless Neovim
# that opens two .avap files; `avap lsp` must attach (one client for both
# buffers), and publish an error for the first file and a warning for the
# second. Needs `nvim` (Debian's package: 0.7.2 on bookworm, the oldest the
# recipe supports) and `avap` on PATH (CI: target/debug after the tests).
# CI step "neovim"; locally: PATH="$PWD/target/debug:$PATH" bash editors/test/neovim.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
readme="$here/../README.md"
command -v nvim >/dev/null || { echo "neovim.sh: nvim is not installed (apt-get install neovim)" >&2; exit 1; }
command -v avap >/dev/null || { echo "neovim.sh: avap is not on PATH (cargo build -p avap-cli; PATH=target/debug:\$PATH)" >&2; exit 1; }
nvim --version | head -1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The recipe, exactly as the README shows it.
awk '/^## Neovim/ { section = 1; next } /^## / { section = 0 }
     section && /^```lua$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$readme" >"$work/init.lua"
if [ ! -s "$work/init.lua" ]; then
  echo "neovim.sh: no \`\`\`lua block under '## Neovim' in editors/README.md" >&2
  exit 1
fi
printf 'addVar(a, 1)\nif(a, 1, "==")\n    addResult(a)\n' >"$work/broken.avap"
printf 'addVar(a, 1)\ngreet(a)\n' >"$work/unknown.avap"
for d in config data state cache; do mkdir -p "$work/xdg/$d"; done

cd "$work"
status=0
XDG_CONFIG_HOME="$work/xdg/config" XDG_DATA_HOME="$work/xdg/data" XDG_STATE_HOME="$work/xdg/state" \
  XDG_CACHE_HOME="$work/xdg/cache" AVAP_RESULT="$work/result.json" AVAP_SECOND="$work/unknown.avap" \
  timeout 120 nvim --headless -i NONE -u "$work/init.lua" broken.avap \
  -c "luafile $here/neovim-check.lua" >"$work/nvim.log" 2>&1 || status=$?
if [ ! -s "$work/result.json" ]; then
  echo "neovim.sh: nvim wrote no result (exit $status); its output:" >&2
  cat "$work/nvim.log" >&2
  exit 1
fi

python3 - "$work/result.json" <<'PY'
import json, sys

r = json.load(open(sys.argv[1]))
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)

if "lua_error" in r:
    sys.exit(f"neovim.sh: the check failed in Neovim: {r['lua_error']}")
first, second = r["first"], r["second"]
for buf in (first, second):
    name = buf["file"]
    expect(buf["filetype"] == "avap", f"{name}: filetype {buf['filetype']!r}, not 'avap'")
    expect(buf["commentstring"] == "// %s", f"{name}: commentstring {buf['commentstring']!r}")
    expect([c["name"] for c in buf["clients"]] == ["avap"], f"{name}: clients {buf['clients']}, not one 'avap'")
    expect(buf["arrived"], f"{name}: no diagnostics arrived")
expect(first["clients"] == second["clients"], "the two buffers have different clients")
expect(r["all_clients"] == 1, f"{r['all_clients']} language clients running, not 1")
errors = [d for d in first["diagnostics"] if d["severity"] == 1]
expect(any(d["lnum"] == 1 and d["source"] == "avap" and "not closed" in d["message"] for d in errors),
       f"broken.avap: no error at line 2 about the unclosed if(): {first['diagnostics']}")
warnings = [d for d in second["diagnostics"] if d["severity"] == 2]
expect(any(d["lnum"] == 1 and "greet" in d["message"] for d in warnings),
       f"unknown.avap: no warning at line 2 about 'greet': {second['diagnostics']}")
if problems:
    sys.exit("neovim.sh: Neovim " + r["version"] + ":\n  " + "\n  ".join(problems))
print(f"neovim {r['version']}: the README's recipe attached avap lsp to both buffers (one client); "
      f"error at broken.avap:2 ({errors[0]['message']!r}), warning at unknown.avap:2")
PY
