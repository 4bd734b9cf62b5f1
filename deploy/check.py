#!/usr/bin/env python3
"""What the schemas cannot see: that the Dockerfile, docker-compose.yml and
the Kubernetes manifests agree with each other and with the programs they
run. Called by deploy/validate.sh:

  check.py compose          docker-compose.yml, interpolated with the values
                            of deploy/compose.env.example, parsed and
                            validated by compose_spec (PyPI compose-spec:
                            bindings of the Rust crate of that name, which
                            follows the Compose specification), then the
                            cross-checks below
  check.py kubernetes FILE  a rendered stream (kustomize build output)
  check.py dockerfile       the Dockerfile's stages, user and health checks
  check.py probe            deploy/probe.sh, and the health-check commands of
                            the Dockerfile and docker-compose.yml, run against
                            a stand-in server on 127.0.0.1

Environment variable names are checked against the flags' `env = "..."` in
host/src/config.rs and brain/src/main.rs, so a misspelt name (which the
programs would silently ignore) fails here.
"""

import fnmatch
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
UID = 10001
DRAIN_DEFAULT = 30  # AVAP_DRAIN_SECS, the host's and the brain's default
SPAN_FLUSH = 5  # the host's span flush after the drain, at most (OTLP down)
BRAIN_OPS_PORT = 9090  # BRAIN_HTTP_LISTEN's default
ERRORS = []


def error(message):
    ERRORS.append(message)


def finish(what):
    if ERRORS:
        for e in ERRORS:
            print(f"FAIL {what}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok   {what}")


def env_names(path):
    names = set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', (ROOT / path).read_text()))
    if not names:
        sys.exit(f"no env names found in {path}")
    return names | {"RUST_LOG"}


HOST_ENV = env_names("host/src/config.rs")
BRAIN_ENV = env_names("brain/src/main.rs")


def check_env(where, names, known):
    for name in names:
        if name not in known:
            error(f"{where}: {name} is not an environment variable the program reads")


def listen_port(address):
    """The port of BRAIN_HTTP_LISTEN (its default when unset); 0 for `off`."""
    if address is None:
        return BRAIN_OPS_PORT
    if address == "off":
        return 0
    return int(str(address).rsplit(":", 1)[1])


def duration_secs(text):
    m = re.fullmatch(r"(\d+)(s|m)", str(text))
    if not m:
        error(f"cannot read the duration {text!r}")
        return 0
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


# ---------------------------------------------------------------- compose


def read_env_file(path):
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def interpolate(text, values):
    """Compose's ${VAR}, ${VAR:?message}, ${VAR:-default} and $$."""
    missing = []

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in values and values[name] != "":
            return values[name]
        if op == ":-":
            return arg or ""
        missing.append(name)
        return ""

    out = re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-)([^}]*))?\}", sub, text)
    return out, missing


def compose():
    env_example = ROOT / "deploy/compose.env.example"
    values = read_env_file(env_example)
    text, missing = interpolate((ROOT / "docker-compose.yml").read_text(), values)
    for name in sorted(set(missing)):
        error(f"docker-compose.yml uses ${{{name}}}, which deploy/compose.env.example does not set")
    from compose_spec import PyCompose

    try:
        PyCompose.from_yaml(text).validate()
    except ValueError as e:
        error(f"compose_spec: {e}")
    if ERRORS:
        return finish("docker-compose.yml")
    doc = yaml.safe_load(text)

    services = doc["services"]
    for name in ("host", "brain", "postgres"):
        if name not in services:
            error(f"no service {name}")
    for name, svc in services.items():
        if "healthcheck" not in svc:
            error(f"{name}: no healthcheck")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                error(f"{name} depends on {dep}, which is not a service")
            if cond.get("condition") != "service_healthy":
                error(f"{name}: depends_on {dep} should wait for service_healthy")
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                if not (ROOT / source).exists():
                    error(f"{name}: mounts {source}, which does not exist")
        for net in svc.get("networks", []):
            if net not in (doc.get("networks") or {}):
                error(f"{name}: network {net} is not declared")
        build = svc.get("build")
        if build and build.get("target") not in dockerfile_stages():
            error(f"{name}: build target {build.get('target')} is not a Dockerfile stage")

    host, brain = services["host"], services["brain"]
    check_env("compose host", host["environment"], HOST_ENV)
    check_env("compose brain", brain["environment"], BRAIN_ENV)
    if set(host.get("depends_on", {})) != {"brain", "postgres"}:
        error("host should wait for brain and postgres")
    drain = int(host["environment"].get("AVAP_DRAIN_SECS", DRAIN_DEFAULT))
    if duration_secs(host.get("stop_grace_period", "10s")) <= drain + SPAN_FLUSH:
        error(f"host: stop_grace_period must exceed AVAP_DRAIN_SECS ({drain}) + the span flush ({SPAN_FLUSH})")
    if "/readyz" not in host["healthcheck"]["test"]:
        error("host: the healthcheck should ask /readyz")
    brain_drain = int(brain["environment"].get("AVAP_DRAIN_SECS", DRAIN_DEFAULT))
    if duration_secs(brain.get("stop_grace_period", "10s")) <= brain_drain:
        error(f"brain: stop_grace_period must exceed its AVAP_DRAIN_SECS ({brain_drain})")
    ops = listen_port(brain["environment"].get("BRAIN_HTTP_LISTEN"))
    if brain["healthcheck"]["test"][1:] != ["avap-probe", "http", str(ops), "/readyz"]:
        error(f"brain: the healthcheck should be avap-probe http {ops} /readyz (its ops port)")
    url = host["environment"]["AVAP_DB_URL"]
    if not url.startswith("postgres://avap_scripts:") or "@postgres:5432/app" not in url:
        error("host: AVAP_DB_URL should connect as avap_scripts to postgres:5432/app")
    role_sql = (ROOT / "deploy/postgres-role.sql").read_text()
    if "CREATE ROLE avap_scripts" not in role_sql or "CREATE SCHEMA avap " not in role_sql:
        error("deploy/postgres-role.sql no longer makes avap_scripts and schema avap")
    if "search_path%3Davap" not in url:
        error("host: AVAP_DB_URL should set search_path to avap")
    mounted = [v for v in services["postgres"].get("volumes", []) if "postgres-role.sql" in v]
    if not mounted or "/docker-entrypoint-initdb.d/" not in mounted[0]:
        error("postgres: deploy/postgres-role.sql is not mounted as an init script")
    if brain["environment"].get("BRAIN_ALLOW_PLAINTEXT") != "true" and "BRAIN_TLS_CERT" not in brain["environment"]:
        error("brain: neither TLS nor the explicit plaintext flag")
    if host["environment"].get("AVAP_BRAIN_PLAINTEXT") != "true" and "BRAIN_TLS_CA" not in host["environment"]:
        error("host: neither BRAIN_TLS_CA nor the explicit plaintext flag")
    for name in ("host", "brain"):
        svc = services[name]
        if not svc.get("read_only") or "ALL" not in svc.get("cap_drop", []):
            error(f"{name}: should be read_only with cap_drop ALL")
    finish("docker-compose.yml")


# ------------------------------------------------------------- kubernetes


def containers(resource):
    return resource["spec"]["template"]["spec"].get("containers", [])


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def kubernetes(path):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if "namespace" in d["metadata"]:
            error(f"{d['kind']}/{d['metadata']['name']} sets a namespace: the base is namespace-agnostic")
    deployments = by_kind.get("Deployment", {})
    host, brain = deployments.get("avap-host"), deployments.get("avap-brain")
    if not host or not brain:
        error("the avap-host and avap-brain Deployments are missing")
        return finish(path)
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    secrets, configmaps = by_kind.get("Secret"), by_kind.get("ConfigMap", {})

    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        if not matches(d["spec"]["selector"]["matchLabels"], pods[name]):
            error(f"{name}: the selector does not match the pod template")
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("runAsUser") != UID:
            error(f"{name}: runAsNonRoot with runAsUser {UID} (the image's user)")
        if spec.get("enableServiceLinks") is not False:
            error(f"{name}: enableServiceLinks should be false (service variables look like ours)")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        notes = d["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            cports = {str(p["containerPort"]) for c in containers(d) for p in c.get("ports", [])}
            if notes.get("prometheus.io/port") not in cports or notes.get("prometheus.io/path") != "/metrics":
                error(f"{name}: the prometheus.io annotations should name a container port and /metrics")
        for c in containers(d):
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                error(f"{name}/{c['name']}: read-only root, no privilege escalation, drop ALL")
            if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
                error(f"{name}/{c['name']}: resources need requests and limits")
            env = {e["name"]: e for e in c.get("env", [])}
            check_env(f"{name}/{c['name']}", env, HOST_ENV if name == "avap-host" else BRAIN_ENV)
            for e in env.values():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and secrets is not None:
                    s = secrets.get(ref["name"])
                    if s is None:
                        error(f"{name}: {e['name']} names Secret {ref['name']}, which is not rendered")
                    elif ref["key"] not in {**s.get("data", {}), **s.get("stringData", {})}:
                        error(f"{name}: {e['name']} names key {ref['key']} of Secret {ref['name']}, which it lacks")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    error(f"{name}: mounts volume {m['name']}, which is not declared")
            for key in ("BRAIN_TLS_CA", "BRAIN_TLS_CERT", "BRAIN_TLS_KEY"):
                if key in env:
                    mounted = any(env[key]["value"].startswith(m["mountPath"] + "/") for m in c.get("volumeMounts", []))
                    if not mounted:
                        error(f"{name}: {key} points outside every mounted volume")
        for v in volumes.values():
            if "secret" in v and secrets is not None and v["secret"]["secretName"] not in secrets:
                error(f"{name}: volume {v['name']} names Secret {v['secret']['secretName']}, which is not rendered")
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                error(f"{name}: volume {v['name']} names ConfigMap {v['configMap']['name']}, which is not rendered")

    # The host: probes, drain, the brain over TLS.
    hspec = host["spec"]["template"]["spec"]
    hc = containers(host)[0]
    henv = {e["name"]: e.get("value") for e in hc.get("env", [])}
    if hc.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        error("avap-host: readiness should be /readyz")
    if hc.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/livez":
        error("avap-host: liveness should be /livez")
    if "replicas" in host["spec"]:
        error("avap-host: no spec.replicas: the HPA owns the count, and every apply would reset it")
    drain = int(henv.get("AVAP_DRAIN_SECS") or DRAIN_DEFAULT)
    pre_stop = hc.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    if hspec.get("terminationGracePeriodSeconds", 30) <= pause + drain + SPAN_FLUSH:
        error(f"avap-host: terminationGracePeriodSeconds must exceed preStop ({pause}) + AVAP_DRAIN_SECS ({drain})"
              f" + the span flush ({SPAN_FLUSH})")
    if not henv.get("BRAIN_TLS_CA") or henv.get("AVAP_BRAIN_PLAINTEXT") or henv.get("AVAP_DEV"):
        error("avap-host: the brain link should be TLS (BRAIN_TLS_CA), with no plaintext or dev flag")
    if henv.get("BRAIN_HOST") not in by_kind.get("Service", {}):
        error(f"avap-host: BRAIN_HOST {henv.get('BRAIN_HOST')} is not a Service")
    bc = containers(brain)[0]
    benv = {e["name"]: e.get("value") for e in bc.get("env", [])}
    if not benv.get("BRAIN_TLS_CERT") or benv.get("BRAIN_ALLOW_PLAINTEXT") or benv.get("AVAP_DEV"):
        error("avap-brain: should serve TLS, with no plaintext or dev flag")
    bspec = brain["spec"]["template"]["spec"]
    brain_drain = int(benv.get("AVAP_DRAIN_SECS") or DRAIN_DEFAULT)
    if bspec.get("terminationGracePeriodSeconds", 30) <= brain_drain:
        error(f"avap-brain: terminationGracePeriodSeconds must exceed its AVAP_DRAIN_SECS ({brain_drain})")
    ops = listen_port(benv.get("BRAIN_HTTP_LISTEN"))
    bports = {p["name"]: p["containerPort"] for p in bc.get("ports", [])}
    if not ops or bports.get("ops") != ops:
        error(f"avap-brain: the container port `ops` should be the ops port (BRAIN_HTTP_LISTEN: {ops})")
    for probe, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = bc.get(probe, {}).get("httpGet", {})
        if get.get("path") != want or get.get("port") != "ops" or get.get("scheme", "HTTP") != "HTTP":
            error(f"avap-brain: {probe} should be httpGet {want} on port ops")
    catalog = benv.get("AVAP_CATALOG_DIR")
    if not any(m["mountPath"] == catalog for m in bc.get("volumeMounts", [])):
        error("avap-brain: AVAP_CATALOG_DIR is not a mounted volume")
    example = (ROOT / "deploy/catalog/greet.avap").read_text()
    if configmaps.get("avap-catalog", {}).get("data", {}).get("greet.avap") != example:
        error("the avap-catalog ConfigMap's greet.avap differs from deploy/catalog/greet.avap")

    # Services, the PDB, the HPA, the NetworkPolicies select what they mean.
    for name, svc in by_kind.get("Service", {}).items():
        targets = [n for n, labels in pods.items() if matches(svc["spec"]["selector"], labels)]
        if targets != [name]:
            error(f"Service {name} selects {targets}")
            continue
        ports = {p["name"] for c in containers(deployments[name]) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports:
                error(f"Service {name}: targetPort {p['targetPort']} is not a container port")
    pdb = by_kind.get("PodDisruptionBudget", {}).get("avap-host")
    if not pdb or not matches(pdb["spec"]["selector"]["matchLabels"], pods["avap-host"]):
        error("the host PodDisruptionBudget is missing or selects other pods")
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("avap-host")
    if not hpa or hpa["spec"]["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": "avap-host"}:
        error("the HPA is missing or scales something else")
    else:
        metrics = {m.get("resource", {}).get("name") or m.get("pods", {}).get("metric", {}).get("name")
                   for m in hpa["spec"]["metrics"]}
        if metrics != {"cpu", "avap_active_executions"}:
            error(f"the HPA should scale on cpu and avap_active_executions, not {metrics}")
        if "`avap_active_executions`" not in (ROOT / "README.md").read_text():
            error("the README's /metrics list no longer has avap_active_executions")
    policies = by_kind.get("NetworkPolicy", {})
    for name in ("avap-host", "avap-brain"):
        pol = policies.get(name)
        if not pol or not matches(pol["spec"]["podSelector"]["matchLabels"], pods[name]):
            error(f"NetworkPolicy {name} is missing or selects other pods")
        elif sorted(pol["spec"]["policyTypes"]) != ["Egress", "Ingress"]:
            error(f"NetworkPolicy {name} should restrict both ingress and egress")
    def from_monitoring(pol, port):
        return any(
            {p["port"] for p in r.get("ports", [])} == {port}
            and r.get("from") == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
            for r in pol.get("ingress", []))

    if "avap-host" in policies:
        if not from_monitoring(policies["avap-host"]["spec"], 8888):
            error("NetworkPolicy avap-host: no ingress rule from the namespace monitoring on 8888 (/metrics)")
        egress = policies["avap-host"]["spec"].get("egress", [])
        to_brain = [r for r in egress for t in r.get("to", []) if matches(t.get("podSelector", {}).get("matchLabels"), pods["avap-brain"])
                    and t.get("podSelector", {}).get("matchLabels")]
        if not to_brain or {p["port"] for r in to_brain for p in r["ports"]} != {50051}:
            error("NetworkPolicy avap-host: no egress rule to the brain's pods on 50051")
        ports = {p["port"] for r in egress for p in r.get("ports", [])}
        if not {53, 5432} <= ports:
            error("NetworkPolicy avap-host: egress should allow DNS (53) and PostgreSQL (5432)")
    if "avap-brain" in policies:
        pol = policies["avap-brain"]["spec"]
        if pol.get("egress"):
            error("NetworkPolicy avap-brain: the brain makes no connection; allow no egress")
        grpc = [r for r in pol.get("ingress", []) if any(p["port"] == 50051 for p in r.get("ports", []))]
        sources = [f for r in grpc for f in r.get("from", [])]
        if (not sources or any(set(f) != {"podSelector"} for f in sources)
                or any(not matches(f["podSelector"].get("matchLabels"), pods["avap-host"]) for f in sources)
                or any({p["port"] for p in r["ports"]} != {50051} for r in grpc)):
            error("NetworkPolicy avap-brain: gRPC (50051) in from this namespace's hosts only")
        if not from_monitoring(pol, BRAIN_OPS_PORT):
            error(f"NetworkPolicy avap-brain: no ingress rule from the namespace monitoring on {BRAIN_OPS_PORT} (/metrics)")
        others = [r for r in pol.get("ingress", []) if r not in grpc and not from_monitoring({"ingress": [r]}, BRAIN_OPS_PORT)]
        if others:
            error(f"NetworkPolicy avap-brain: ingress rules beyond gRPC from hosts and /metrics from monitoring: {others}")
    finish(path)


# ------------------------------------------------------------- dockerfile


def dockerfile_stages():
    text = (ROOT / "Dockerfile").read_text()
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)


def dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    stages = dockerfile_stages()
    for want in ("build", "host", "brain"):
        if want not in stages:
            error(f"no stage {want}")
    if stages and stages[-1] != "host":
        error("the last stage (docker build's default target) should be host")
    blocks = re.split(r"^FROM\s", text, flags=re.M | re.I)[1:]
    by_stage = {stages[i]: b for i, b in enumerate(blocks) if i < len(stages)}
    if "rustup target add wasm32-wasip1" not in by_stage.get("build", ""):
        error("the build stage must add the wasm32-wasip1 target (the host's build script builds the guest)")
    if not re.search(r"cargo build --release --locked -p avap-host -p avap-brain", by_stage.get("build", "")):
        error("the build stage should build both binaries, --release --locked")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or any(not re.fullmatch(r"\d+(:\d+)?", u) for u in users) or users[-1].split(":")[0] != str(UID):
        error(f"USER must be numeric ({UID}) so runAsNonRoot can check it")
    for stage, ports, path in (("host", {"8888"}, "/livez"), ("brain", {"50051", str(BRAIN_OPS_PORT)}, "/readyz")):
        block = by_stage.get(stage, "")
        if "HEALTHCHECK" not in block:
            error(f"stage {stage} has no HEALTHCHECK")
        else:
            cmd = re.findall(r"^HEALTHCHECK\s.*?CMD\s+(\[[^\n]*\])$", block, re.M | re.S)
            if not cmd or not json.loads(cmd[0])[-1].endswith(f" {path}"):
                error(f"stage {stage}: the HEALTHCHECK should ask {path}")
        if "ENTRYPOINT" not in block:
            error(f"stage {stage} has no ENTRYPOINT")
        exposed = {p.split("/")[0] for line in re.findall(r"^EXPOSE\s+(.*)$", block, re.M) for p in line.split()}
        if exposed != ports:
            error(f"stage {stage}: EXPOSE {sorted(exposed)}, not {sorted(ports)}")
    brain_block = by_stage.get("brain", "")
    if f"BRAIN_HTTP_LISTEN=0.0.0.0:{BRAIN_OPS_PORT}" not in brain_block or "BRAIN_HTTP_LISTEN##*:" not in brain_block:
        error(f"stage brain: ENV BRAIN_HTTP_LISTEN=0.0.0.0:{BRAIN_OPS_PORT}, and the HEALTHCHECK on its port")
    for line in re.findall(r"^COPY\s.*$", text, re.M):
        words = [w for w in line.split()[1:] if not w.startswith("--")]
        if "--from=" in line or len(words) != 2 or words[0] == ".":
            continue
        source = words[0]
        if not (ROOT / source).exists():
            error(f"COPY {source}: no such file")
    dockerignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
                    if l.strip() and not l.lstrip().startswith("#")]
    for excluded in ("target", ".git", ".env", "**/*.env", "**/.hypothesis", "**/.schemathesis",
                     "fuzz/artifacts", "fuzz/corpus", "deploy/kubernetes/example/secrets*.yaml",
                     "deploy/kubernetes/local"):
        if excluded not in dockerignore:
            error(f".dockerignore should exclude {excluded} (COPY . . takes the whole context)")
    if any(l.startswith("!") for l in dockerignore):
        error(".dockerignore re-includes something (!): nothing ignored is needed by the build")
    for needed in ("deploy/probe.sh", "Cargo.toml", "Cargo.lock"):
        if any(fnmatch.fnmatch(needed, pat) or needed.startswith(pat.rstrip("/") + "/") for pat in dockerignore):
            error(f".dockerignore excludes {needed}, which the build copies")
    finish("Dockerfile")


# ------------------------------------------------------------------ probe


def probe():
    import http.server
    import os
    import socket
    import subprocess
    import tempfile
    import threading

    def stub(readyz):
        class Stub(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status = {"/livez": 200, "/readyz": readyz}.get(self.path, 404)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, str(server.server_address[1])

    # A program that is alive but not ready (/readyz 503), and one that is both.
    server, port = stub(503)
    ready_server, ready_port = stub(200)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = str(closed.getsockname()[1])
    closed.close()

    bin_dir = tempfile.mkdtemp(prefix="avap-probe-")
    os.symlink(ROOT / "deploy/probe.sh", os.path.join(bin_dir, "avap-probe"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(argv, want, extra=None):
        quiet = subprocess.DEVNULL if want == 2 else None  # the usage message
        code = subprocess.run(argv, env={**env, **(extra or {})}, stderr=quiet, timeout=10).returncode
        if code != want:
            error(f"{' '.join(argv)} exited {code}, not {want}")

    run(["avap-probe", "http", port, "/livez"], 0)
    run(["avap-probe", "http", port, "/readyz"], 1)  # 503
    run(["avap-probe", "http", port, "/nothing"], 1)  # 404
    run(["avap-probe", "http", closed_port, "/livez"], 1)
    run(["avap-probe", "tcp", port], 0)
    run(["avap-probe", "tcp", closed_port], 1)
    run(["avap-probe", "http", port, "livez"], 2)
    run(["avap-probe", "tcp", "x"], 2)

    # The images' HEALTHCHECK commands, as Docker runs them (exec form),
    # with the port variables they read pointed at the stand-in.
    text = (ROOT / "Dockerfile").read_text()
    checks = re.findall(r"^HEALTHCHECK\s.*?CMD\s+(\[[^\n]*\])$", text, re.M | re.S)
    if len(checks) != 2:
        error(f"expected two HEALTHCHECK commands, found {len(checks)}")
    def ports_env(p):
        return {"PORT": p, "BRAIN_LISTEN": f"127.0.0.1:{p}", "BRAIN_HTTP_LISTEN": f"127.0.0.1:{p}"}

    # A check asking /readyz must fail on the not-ready stand-in; every
    # check passes on the ready one and fails on a closed port.
    for argv in map(json.loads, checks):
        run(argv, 0, ports_env(ready_port))
        run(argv, 1 if "/readyz" in argv[-1] else 0, ports_env(port))
        run(argv, 1, ports_env(closed_port))
    # docker-compose.yml's, with the stand-ins' ports for theirs.
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("brain", "host"):
        test = services[name]["healthcheck"]["test"]
        if "/readyz" not in test:
            error(f"compose {name}: the healthcheck should ask /readyz")
        for p, want in ((ready_port, 0), (port, 1), (closed_port, 1)):
            run([p if a in ("8888", "9090", "50051") else a for a in test[1:]], want)
    server.shutdown()
    ready_server.shutdown()
    finish("probe")


def main():
    what = sys.argv[1:2]
    if what == ["compose"] and len(sys.argv) == 2:
        compose()
    elif what == ["kubernetes"] and len(sys.argv) == 3:
        kubernetes(sys.argv[2])
    elif what == ["dockerfile"]:
        dockerfile()
    elif what == ["probe"]:
        probe()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
