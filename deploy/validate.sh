#!/usr/bin/env bash
# Checks what deploy/ ships without a Docker engine or a cluster (neither
# exists on the machines this project is built on). README.md, "Operating",
# says what this proves and what it does not.
#
#   1. tools: a venv under target/deploy-tools from deploy/requirements.txt
#      (PyPI), made once and reused: later runs need no network;
#   2. renders deploy/kubernetes/base and deploy/kubernetes/example with
#      kustomize (`kustomize build`, else `kubectl kustomize`, v5 or newer),
#      and with deploy/kustomize_lite.py; with both, their resources must be
#      the same. Without a kustomize, the lite render alone, said loudly;
#   3. kubernetes-validate --strict, against the schemas of Kubernetes 1.30
#      and 1.37: every manifest file and both renders;
#   4. deploy/check.py: the renders, docker-compose.yml (compose_spec's
#      parser and validator, then the cross-checks) and the Dockerfile agree
#      with each other and with the programs' flags;
#   5. hadolint on the Dockerfile, shellcheck on the scripts;
#   6. the probe script and every health-check command, against a stand-in
#      server on 127.0.0.1.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/deploy-tools
venv=$tools/venv
out=$tools/out
kube_versions=(1.30.0 1.37.0)
step() { printf -- '--- %s\n' "$1"; }

step "tools"
want=$(sha256sum deploy/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements" 2>/dev/null || true)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r deploy/requirements.txt
  echo "$want" >"$venv/.requirements"
fi
py=$venv/bin/python
"$venv/bin/kubernetes-validate" --version
"$venv/bin/hadolint" --version

step "render"
rm -rf "$out"
mkdir -p "$out"
renderer=()
if command -v kustomize >/dev/null; then
  renderer=(kustomize build)
elif command -v kubectl >/dev/null \
  && kubectl version --client 2>/dev/null | grep -Eq '^Kustomize Version: v([5-9]|[1-9][0-9])\.'; then
  renderer=(kubectl kustomize)
fi
for overlay in base example; do
  "$py" deploy/kustomize_lite.py "deploy/kubernetes/$overlay" >"$out/$overlay.lite.yaml"
  if [ ${#renderer[@]} -gt 0 ]; then
    "${renderer[@]}" "deploy/kubernetes/$overlay" >"$out/$overlay.yaml"
    "$py" - "$out/$overlay.yaml" "$out/$overlay.lite.yaml" <<'PY'
import sys, yaml
key = lambda r: (r["kind"], r["metadata"]["name"])
real, lite = ([d for d in yaml.safe_load_all(open(p)) if d] for p in sys.argv[1:])
if sorted(real, key=key) != sorted(lite, key=key):
    sys.exit(f"kustomize_lite.py renders {sys.argv[2]} unlike kustomize ({sys.argv[1]})")
PY
    echo "$overlay: ${renderer[*]} ($(grep -c '^kind:' "$out/$overlay.yaml") resources), and kustomize_lite.py renders the same"
  else
    cp "$out/$overlay.lite.yaml" "$out/$overlay.yaml"
    echo "$overlay: NO kustomize found (neither kustomize nor kubectl with kustomize v5+): rendered by deploy/kustomize_lite.py only"
  fi
done

step "schemas"
# The tracked overlays only: deploy/kubernetes/local (git-ignored, real
# Secrets) and a filled-in example/secrets.yaml are the user's own.
mapfile -t manifests < <(find deploy/kubernetes/base deploy/kubernetes/example -name '*.yaml' \
  ! -name kustomization.yaml ! -path deploy/kubernetes/example/secrets.yaml | sort)
for version in "${kube_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" \
    "${manifests[@]}" "$out/base.yaml" "$out/example.yaml"
  echo "Kubernetes $version (strict): ${#manifests[@]} manifest files and 2 renders valid"
done

step "cross-checks"
"$py" deploy/check.py kubernetes "$out/base.yaml"
"$py" deploy/check.py kubernetes "$out/example.yaml"
"$py" deploy/check.py compose
"$py" deploy/check.py dockerfile

step "lint"
"$venv/bin/hadolint" Dockerfile
echo "hadolint: Dockerfile clean"
"$venv/bin/shellcheck" deploy/validate.sh deploy/probe.sh deploy/compose/*.sh tests/api-contract.sh
echo "shellcheck: scripts clean"

step "probes"
"$py" deploy/check.py probe
