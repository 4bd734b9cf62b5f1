//! The trust chain through the real paths: a real brain (or a stand-in
//! where a test needs a catalog the real brain never sends) over real gRPC,
//! real TLS handshakes, real wasmtime. Each refusal is checked where an
//! operator looks: `/health`, `/metrics`, and the catalog staying as it was.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avap_brain::{BrainConfig, TlsConfig};
use avap_wire::guest_sig::GuestSigningKey;
use avap_wire::keys::{KeyScheme, Keys};
use avap_wire::manifest::{MANIFEST_ENTRY, Manifest, rollout_bucket};
use avap_wire::pb::{
    CatalogResponse, CommandRequest, CommandResponse, DefinitionEngine, DefinitionEngineServer, Empty,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::catalog_sync::{
    BrainProc, brain_config, empty_cache, guest_with_version, host_for, original_servers, precompile_into, signed,
    start_legacy, wait_health, with_version,
};
use crate::common::Server;

const SECRET: &str = avap_wire::auth::DEFAULT_INTERNAL_KEY;

fn keys() -> Keys {
    Keys::new(SECRET.as_bytes(), KeyScheme::Separated)
}

/// An expiry an hour from now.
fn later() -> u64 {
    avap_wire::manifest::now_ms() + 3_600_000
}

async fn metrics(server: &Server) -> String {
    server.get_text("/metrics").await.1
}

fn metric_value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn refused(server: &Server, what: &str) -> Value {
    wait_health(server, Duration::from_secs(20), what, |h| h["brain"]["refusals"].as_u64() >= Some(1)).await
}

#[tokio::test]
async fn a_guest_signed_by_an_unknown_key_is_refused_and_a_trusted_one_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = Arc::new(GuestSigningKey::generate().expect("key"));
    std::fs::write(dir.path().join("guest-vm.wasm"), guest_with_version("9.9.9")).expect("write");
    let brain =
        BrainProc::start(BrainConfig { guest_signing_key: Some(release.clone()), ..brain_config(Some(dir.path())) })
            .await;

    // --dev trusts only the development key: this release key is a stranger.
    let (server, _) = host_for(brain.port, |_| {}).await;
    let health = refused(&server, "the refusal").await;
    let why = health["brain"]["last_refusal"].as_str().unwrap_or("");
    assert!(why.contains("does not trust") && why.contains(&release.public().id()), "{health}");
    assert_eq!(health["guest"]["version"], json!(avap_guest_vm::GUEST_VERSION), "the guest stays");
    assert_eq!(health["catalog"]["source"], json!("built-in"), "nothing of the update applies");
    let m = metrics(&server).await;
    assert!(metric_value(&m, "avap_catalog_refusals_total{reason=\"guest_signature\"}") >= 1.0, "{m}");

    // A host that holds the release's public key takes it.
    let (server, _) = host_for(brain.port, |c| c.guest_keys = vec![release.public()].into()).await;
    let health =
        wait_health(&server, Duration::from_secs(30), "the swap", |h| h["guest"]["version"] == json!("9.9.9")).await;
    assert_eq!(health["trust"]["guest_keys"][0], json!(release.public().id()));
    let m = metrics(&server).await;
    assert!(m.contains("avap_guest_info{version=\"9.9.9\""), "{m}");
    server.assert_healthy().await;
}

/// Serves whatever catalog the test puts in, no watch stream.
async fn stand_in(catalog: CatalogResponse) -> (Arc<Mutex<CatalogResponse>>, u16, tokio::sync::oneshot::Sender<()>) {
    let (legacy, port, stop) = start_legacy(catalog).await;
    (legacy.0.clone(), port, stop)
}

#[tokio::test]
async fn a_replayed_older_catalog_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let older = brain.brain.catalog();
    std::fs::write(dir.path().join("twice.avap"), "function twice(x) {\n  return x * 2\n}\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while brain.brain.catalog().version_hash == older.version_hash {
        assert!(Instant::now() < deadline, "the brain never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let newer = brain.brain.catalog();

    // A man in the middle (or a broken brain) that recorded both.
    let (served, port, _stop) = stand_in(CatalogResponse::clone(&newer)).await;
    let (server, _) = host_for(port, |_| {}).await;
    wait_health(&server, Duration::from_secs(20), "the newer catalog", |h| h["catalog"]["commands"] == json!(29)).await;
    *served.lock().expect("lock") = CatalogResponse::clone(&older);
    let health = refused(&server, "the replay").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("older than the live"), "{health}");
    assert_eq!(health["catalog"]["commands"], json!(29), "the newer catalog stays");
    let (status, body) = server.run("y = twice(4)\naddResult(y)").await;
    assert_eq!((status, &body["result"]), (200, &json!({"y": 8})), "{body}");
    let m = metrics(&server).await;
    assert!(metric_value(&m, "avap_catalog_refusals_total{reason=\"replay\"}") >= 1.0, "{m}");
}

#[tokio::test]
async fn an_empty_or_partial_catalog_is_refused_unless_its_manifest_says_so() {
    let brain = BrainProc::start(brain_config(None)).await;
    let full = CatalogResponse::clone(&brain.brain.catalog());

    // Empty, no manifest: nothing to sign, so nothing to accept.
    let (served, port, _stop) = stand_in(CatalogResponse::default()).await;
    let (server, _) = host_for(port, |_| {}).await;
    let health = refused(&server, "the empty catalog").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("no signed manifest"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"));
    let (status, _) = server.run("addVar(a, 1)\naddResult(a)").await;
    assert_eq!(status, 200, "the built-in commands stay");

    // Partial: the real manifest, one entry dropped.
    let mut partial = full.clone();
    partial.commands.retain(|c| c.name != "addVar");
    *served.lock().expect("lock") = partial;
    let health = wait_health(&server, Duration::from_secs(10), "the partial catalog", |h| {
        h["brain"]["last_refusal"].as_str().unwrap_or("").contains("addVar")
    })
    .await;
    assert!(
        health["brain"]["last_refusal"].as_str().unwrap_or("").contains("listed but not in the catalog"),
        "{health}"
    );

    // A serial far ahead of the host's clock would lock out every later
    // catalog: refused.
    let signed_empty = |serial: u64| {
        let manifest = Manifest::describe(serial, "2026-12-01T00:00:00Z".into(), later(), &[], None);
        CatalogResponse {
            commands: vec![manifest.to_entry(keys().manifest()).expect("manifest")],
            total_count: 1,
            ..Default::default()
        }
    };
    *served.lock().expect("lock") = signed_empty(u64::MAX / 2);
    wait_health(&server, Duration::from_secs(10), "the future serial", |h| {
        h["brain"]["last_refusal"].as_str().unwrap_or("").contains("ahead of this host's clock")
    })
    .await;

    // An empty catalog the brain signed is just another catalog.
    *served.lock().expect("lock") = signed_empty(brain.brain.serial() + 1);
    wait_health(&server, Duration::from_secs(10), "the signed empty catalog", |h| {
        h["catalog"]["source"] == json!("brain") && h["catalog"]["commands"] == json!(0)
    })
    .await;
    let (status, body) = server.run("addVar(a, 1)").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_compiled_package_never_passes_as_a_catalog_entry() {
    // The compile endpoint signs anything valid: it must not sign catalog entries.
    let server = Server::default().await;
    let (status, body, _) = server
        .post("/api/v1/compile", json!({"script": "function evil(x) {\n  return x\n}\naddVar(a, 1)", "name": "evil"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let code = base64_decode(body["package"].as_str().expect("package"));
    let forged = CommandResponse {
        name: "evil".into(),
        r#type: "avap".into(),
        interface_json: "[]".into(),
        hash: avap_wire::catalog::entry_hash(&code),
        code,
    };
    // Under this project's scheme, even inside a valid manifest.
    let entries = vec![forged.clone()];
    let manifest = Manifest::describe(1, "2026-12-01T00:00:00Z".into(), later(), &entries, None);
    let mut commands = entries;
    commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
    let (_served, port, _stop) = stand_in(CatalogResponse { commands, total_count: 2, ..Default::default() }).await;
    let (host, _) = host_for(port, |_| {}).await;
    let health = refused(&host, "the forged entry").await;
    let why = health["brain"]["last_refusal"].as_str().unwrap_or("");
    assert!(why.contains("entry `evil`") && why.contains("signature does not match"), "{health}");

    // And under the original servers' scheme (no manifest needed).
    let (_served, port, _stop) = stand_in(with_version(vec![forged, signed("addVar", "function", b"# py")])).await;
    let (host, _) = host_for(port, original_servers).await;
    let health = refused(&host, "the forged entry").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("entry `evil`"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}

#[tokio::test]
async fn oversized_modules_and_messages_are_refused() {
    let brain = BrainProc::start(brain_config(None)).await;
    let module_bytes = avap_host::GUEST_WASM.len();
    let (server, _) = host_for(brain.port, |c| c.max_guest_module_bytes = module_bytes - 1).await;
    let health = refused(&server, "the module cap").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("AVAP_MAX_GUEST_MODULE_BYTES"), "{health}");
    let m = metrics(&server).await;
    assert!(metric_value(&m, "avap_catalog_refusals_total{reason=\"too_large\"}") >= 1.0, "{m}");

    // The whole message over the cap is not even decoded.
    let (server, _) = host_for(brain.port, |c| c.brain_max_message_bytes = 256 << 10).await;
    let health =
        wait_health(&server, Duration::from_secs(10), "the message cap", |h| !h["brain"]["last_error"].is_null()).await;
    let error = health["brain"]["last_error"].as_str().unwrap_or("");
    assert!(error.contains("message length too large") || error.contains("OutOfRange"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"));
    server.assert_healthy().await;
}

/// Sends the catalog on `WatchCatalog`, then nothing, ever; counts calls.
#[derive(Clone)]
struct SilentBrain {
    catalog: CatalogResponse,
    watches: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl DefinitionEngine for SilentBrain {
    async fn get_command(&self, _: Request<CommandRequest>) -> Result<Response<CommandResponse>, Status> {
        Err(Status::not_found("not here"))
    }

    async fn sync_catalog(&self, _: Request<Empty>) -> Result<Response<CatalogResponse>, Status> {
        Ok(Response::new(self.catalog.clone()))
    }

    type WatchCatalogStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<CatalogResponse, Status>> + Send>>;

    async fn watch_catalog(&self, _: Request<Empty>) -> Result<Response<Self::WatchCatalogStream>, Status> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        let first = tokio_stream::once(Ok(self.catalog.clone()));
        let silence = tokio_stream::pending();
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::chain(first, silence))))
    }
}

#[tokio::test]
async fn a_silent_watch_stream_is_stale_and_reconnected() {
    let brain = BrainProc::start(brain_config(None)).await;
    let silent = SilentBrain { catalog: CatalogResponse::clone(&brain.brain.catalog()), watches: Arc::default() };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DefinitionEngineServer::new(silent.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (server, _) = host_for(port, |c| c.brain_idle_timeout_ms = 400).await;
    wait_health(&server, Duration::from_secs(20), "the catalog", |h| h["catalog"]["source"] == json!("brain")).await;
    let health =
        wait_health(&server, Duration::from_secs(10), "staleness", |h| h["brain"]["state"] == json!("stale")).await;
    assert!(health["brain"]["last_error"].as_str().unwrap_or("").contains("silent"), "{health}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent.watches.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the host did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = metrics(&server).await;
    assert!(m.contains("avap_brain_up"), "{m}");
    server.assert_healthy().await;

    // The real brain's keepalives keep a quiet stream live.
    let (server, _) = host_for(brain.port, |c| c.brain_idle_timeout_ms = 400).await;
    wait_health(&server, Duration::from_secs(20), "the catalog", |h| h["catalog"]["source"] == json!("brain")).await;
    drop(brain);
    let _ = server;
}

/// A CA, and a certificate it signed for `localhost`.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "avap test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    Pki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

#[tokio::test]
async fn the_brain_is_reached_over_tls_and_a_wrong_certificate_is_refused() {
    let (server_pki, client_pki, stranger) = (pki(), pki(), pki());
    let files = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca = write("ca.pem", &server_pki.ca_pem);
    let other_ca = write("other-ca.pem", &stranger.ca_pem);
    let client_cert = write("client.pem", &client_pki.cert_pem);
    let client_key = write("client.key", &client_pki.key_pem);
    let tls = TlsConfig {
        cert_pem: server_pki.cert_pem.clone().into_bytes(),
        key_pem: server_pki.key_pem.clone().into_bytes(),
        client_ca_pem: Some(client_pki.ca_pem.clone().into_bytes()),
    };
    let brain =
        BrainProc::start(BrainConfig { tls: Some(tls), dev: false, original_servers: true, ..brain_config(None) })
            .await;
    let tls_host = |ca: std::path::PathBuf, with_client: bool| {
        let (client_cert, client_key) = (client_cert.clone(), client_key.clone());
        move |c: &mut avap_host::Config| {
            original_servers(c);
            c.brain_tls_ca = Some(ca);
            c.brain_tls_domain = Some("localhost".into());
            if with_client {
                c.brain_client_cert = Some(client_cert);
                c.brain_client_key = Some(client_key);
            }
        }
    };

    // The right CA and a client certificate: synced over TLS.
    let (server, _) = host_for(brain.port, tls_host(ca.clone(), true)).await;
    let health =
        wait_health(&server, Duration::from_secs(20), "the TLS sync", |h| h["catalog"]["source"] == json!("brain"))
            .await;
    assert_eq!(health["brain"]["transport"], json!("tls"));
    assert!(health["brain"]["address"].as_str().unwrap_or("").starts_with("https://"), "{health}");

    // A brain whose certificate the host's CA did not sign: never trusted.
    let (server, _) = host_for(brain.port, tls_host(other_ca, true)).await;
    let health =
        wait_health(&server, Duration::from_secs(10), "the handshake failure", |h| !h["brain"]["last_error"].is_null())
            .await;
    let error = health["brain"]["last_error"].as_str().unwrap_or("").to_lowercase();
    assert!(error.contains("certificate") || error.contains("unknownissuer"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"));

    // Mutual TLS: a host without a client certificate is turned away.
    let (server, _) = host_for(brain.port, tls_host(ca, false)).await;
    let health = wait_health(&server, Duration::from_secs(10), "the missing client certificate", |h| {
        !h["brain"]["last_error"].is_null()
    })
    .await;
    assert_eq!(health["catalog"]["source"], json!("built-in"), "{health}");
    assert_eq!(health["brain"]["reachable"], json!(false));
}

/// Host ids whose roll-out buckets fall below and above `percent`.
fn host_ids(percent: u8) -> (String, String, String) {
    let mut canary = None;
    let mut rest = Vec::new();
    for i in 0.. {
        let id = format!("host-{i}");
        if rollout_bucket(&id) < percent {
            canary.get_or_insert(id);
        } else if rest.len() < 2 {
            rest.push(id);
        }
        if canary.is_some() && rest.len() == 2 {
            break;
        }
    }
    let canary = canary.unwrap_or_default();
    (canary, rest.remove(0), rest.remove(0))
}

#[tokio::test]
async fn a_staged_roll_out_and_a_roll_back_across_three_hosts_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (canary_id, second_id, third_id) = host_ids(34);
    let mut hosts = Vec::new();
    for id in [&canary_id, &second_id, &third_id] {
        let id = id.clone();
        let (server, _) = host_for(brain.port, move |c| c.host_id = Some(id)).await;
        wait_health(&server, Duration::from_secs(30), "the first sync", |h| h["catalog"]["source"] == json!("brain"))
            .await;
        hosts.push(Arc::new(server));
    }
    let old = avap_guest_vm::GUEST_VERSION;
    let new = "9.9.9";

    // Load on every host for the whole roll-out and roll-back.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for server in &hosts {
        for _ in 0..2 {
            let (server, stop) = (server.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = server.run("addVar(a, 20)\nb = a * 2 + 2\naddResult(b)").await;
                    if status == 200 && body["result"] == json!({"b": 42}) {
                        ok += 1;
                    } else {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (ok, failed)
            }));
        }
    }
    let version_of = |h: &Value| h["guest"]["version"].clone();

    // Stage 1: the new guest to 34% of hosts: the canary only.
    std::fs::write(dir.path().join("rollout.json"), r#"{"percent": 34}"#).expect("write");
    std::fs::write(dir.path().join("guest-vm.wasm"), guest_with_version(new)).expect("write");
    wait_health(&hosts[0], Duration::from_secs(40), "the canary's swap", |h| version_of(h) == json!(new)).await;
    for other in &hosts[1..] {
        let health =
            wait_health(other, Duration::from_secs(20), "the hold", |h| h["brain"]["guest_hold"].is_string()).await;
        assert_eq!(version_of(&health), json!(old), "outside the first 34%: keeps its guest");
        assert!(health["brain"]["guest_hold"].as_str().unwrap_or("").contains("34%"), "{health}");
    }

    // Stage 2: everyone.
    std::fs::write(dir.path().join("rollout.json"), r#"{"percent": 100}"#).expect("write");
    for server in &hosts {
        let health =
            wait_health(server, Duration::from_secs(40), "the full roll-out", |h| version_of(h) == json!(new)).await;
        assert!(health["brain"]["guest_hold"].is_null(), "{health}");
    }

    // Roll back: the brain serves the older guest again under a newer
    // serial. No host flag: the signed manifest orders it.
    std::fs::remove_file(dir.path().join("guest-vm.wasm")).expect("remove");
    std::fs::remove_file(dir.path().join("rollout.json")).expect("remove");
    for server in &hosts {
        let health =
            wait_health(server, Duration::from_secs(40), "the roll-back", |h| version_of(h) == json!(old)).await;
        assert_eq!(health["catalog"]["manifest_serial"], json!(brain.brain.serial()));
        let m = metrics(server).await;
        assert!(m.contains(&format!("avap_guest_info{{version=\"{old}\"")), "{m}");
        assert!(!m.contains(&format!("avap_guest_info{{version=\"{new}\"")), "only the live guest: {m}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.expect("client");
        ok += o;
        failed.extend(f);
    }
    eprintln!("staged roll-out and roll-back: {ok} requests succeeded, {} failed", failed.len());
    assert!(ok > 0);
    assert!(failed.is_empty(), "requests failed during the roll-out: {:?}", &failed[..failed.len().min(5)]);
}

#[tokio::test]
async fn the_manifest_entry_is_never_a_command() {
    let brain = BrainProc::start(brain_config(None)).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let health =
        wait_health(&server, Duration::from_secs(20), "the sync", |h| h["catalog"]["source"] == json!("brain")).await;
    assert_eq!(health["catalog"]["commands"], json!(28));
    assert!(brain.brain.catalog().commands.iter().any(|c| c.name == MANIFEST_ENTRY));
    assert_eq!(health["trust"]["mode"], json!("dev"));
    assert_eq!(health["trust"]["catalog"], json!("signed-manifest"));
}

/// A guest that keeps to the ABI and passes the self-test (whose script
/// starts with `a`), and traps on every other script: what a canary must
/// catch from real traffic.
const CANARY_TRAP: &str = r#"(module
  (memory (export "memory") 1)
  (data (i32.const 0) "9.9.9")
  (data (i32.const 16) "{\"ok\":true,\"result\":{\"b\":42}}")
  (func (export "avap_abi_version") (result i32) i32.const 1)
  (func (export "avap_guest_version") (result i64) i64.const 5)
  (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "avap_run") (param i32 i32) (result i64)
    ;; the input starts {"script":" (11 bytes): look at the script's first byte
    (if (i32.ne (i32.load8_u (i32.add (local.get 0) (i32.const 11))) (i32.const 97)) (then unreachable))
    i64.const 0x100000001d))"#;

#[tokio::test]
async fn a_canary_whose_interpreter_fails_real_traffic_goes_back_to_the_previous_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    wait_health(&server, Duration::from_secs(30), "the first sync", |h| h["catalog"]["source"] == json!("brain")).await;
    let old = avap_guest_vm::GUEST_VERSION;
    let module = wat::parse_str(CANARY_TRAP).expect("wat");
    std::fs::write(dir.path().join("guest-vm.wasm"), &module).expect("write");
    wait_health(&server, Duration::from_secs(30), "the swap", |h| h["guest"]["version"] == json!("9.9.9")).await;

    // Real traffic: the new interpreter traps on it; after a handful the
    // host goes back, and every later request runs on the previous guest.
    let script = "x = 20 + 22\naddResult(x)";
    let mut crashed = 0;
    for _ in 0..40 {
        let (status, body) = server.run(script).await;
        if status == 200 {
            assert_eq!(body["result"], json!({"x": 42}));
        } else {
            assert_eq!(body["kind"], json!("guest_crash"), "{body}");
            crashed += 1;
        }
    }
    assert_eq!(crashed, avap_host::catalog::canary::MIN_FAULTS, "exactly the faults that trip the guard");
    let health =
        wait_health(&server, Duration::from_secs(20), "the refusal", |h| h["guest"]["version"] == json!(old)).await;
    let why = health["brain"]["last_refusal"].as_str().unwrap_or("");
    assert!(why.contains("failed its canary"), "{health}");
    let m = metrics(&server).await;
    assert!(metric_value(&m, "avap_catalog_refusals_total{reason=\"canary\"}") >= 1.0, "{m}");
    // The newest catalog stays applied, with the previous guest; the module
    // is not taken again from the same catalog.
    let serial = brain.brain.serial();
    let health = wait_health(&server, Duration::from_secs(20), "the newest catalog, held", |h| {
        h["brain"]["guest_hold"].is_string() && h["catalog"]["manifest_serial"] == json!(serial)
    })
    .await;
    assert!(health["brain"]["guest_hold"].as_str().unwrap_or("").contains("failed its canary"), "{health}");
    assert_eq!(health["guest"]["version"], json!(old));
    let (status, body) = server.run(script).await;
    assert_eq!((status, &body["result"]), (200, &json!({"x": 42})), "{body}");
}

#[tokio::test]
async fn once_a_manifest_was_taken_a_catalog_without_one_is_refused() {
    // A brain serving the original servers still seals its catalogs.
    let config = BrainConfig { dev: false, original_servers: true, ..brain_config(None) };
    let brain = BrainProc::start(config).await;
    let sealed = CatalogResponse::clone(&brain.brain.catalog());
    assert!(sealed.commands.iter().any(|c| c.name == MANIFEST_ENTRY));
    let (served, port, _stop) = stand_in(sealed).await;
    let (server, _) = host_for(port, original_servers).await;
    wait_health(&server, Duration::from_secs(20), "the sealed catalog", |h| h["catalog"]["manifest_serial"].is_u64())
        .await;
    // The same entries without their manifest: in this mode a manifest is
    // optional, but dropping it once one was taken is a downgrade.
    *served.lock().expect("lock") =
        with_version(vec![signed("addVar", "function", b"# py"), signed("addResult", "function", b"# py")]);
    let health = refused(&server, "the unsealed catalog").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("cannot replace it"), "{health}");
    assert_eq!(health["catalog"]["commands"], json!(27), "the sealed catalog stays (no guest: no key)");
}

/// A guest rolled out as the README says (copy `guest-vm.wasm`, then its
/// `.sig`): the brain never publishes the module with the old signature,
/// so no host refuses anything, and the new guest is taken once the pair
/// matches.
#[tokio::test]
async fn a_guest_rolled_out_as_documented_is_never_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = Arc::new(GuestSigningKey::generate().expect("key"));
    let (v1, v2) = (guest_with_version("9.9.8"), guest_with_version("9.9.9"));
    let sig = |module: &[u8]| serde_json::to_string_pretty(&release.sign(module)).expect("json");
    std::fs::write(dir.path().join("guest-vm.wasm"), &v1).expect("write");
    std::fs::write(dir.path().join("guest-vm.wasm.sig"), sig(&v1)).expect("write");
    let brain =
        BrainProc::start(BrainConfig { guest_signing_key: Some(release.clone()), ..brain_config(Some(dir.path())) })
            .await;
    let (server, _) = host_for(brain.port, |c| c.guest_keys = vec![release.public()].into()).await;
    wait_health(&server, Duration::from_secs(40), "the first guest", |h| h["guest"]["version"] == json!("9.9.8")).await;

    // The module, then (a second later: many rescans) its signature.
    std::fs::write(dir.path().join("guest-vm.wasm"), &v2).expect("write");
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(dir.path().join("guest-vm.wasm.sig"), sig(&v2)).expect("write");
    let health =
        wait_health(&server, Duration::from_secs(40), "the new guest", |h| h["guest"]["version"] == json!("9.9.9"))
            .await;
    assert_eq!(health["brain"]["refusals"], json!(0), "{health}");
    assert!(health["brain"]["last_refusal"].is_null(), "{health}");
    let m = metrics(&server).await;
    assert_eq!(metric_value(&m, "avap_catalog_refusals_total{reason=\"guest_signature\"}"), 0.0, "{m}");
}

/// A refusal is shown until a good catalog applies, then it is history
/// (`refusals` and the metric keep the count): `/health` does not go on
/// reporting a problem that is over.
#[tokio::test]
async fn a_refusal_leaves_health_once_a_good_catalog_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Valid header, garbage after: signed fine (the development key), but
    // it does not compile, so every host refuses the catalog.
    let mut broken = b"\0asm\x01\0\0\0".to_vec();
    broken.extend_from_slice(b"definitely not a module");
    std::fs::write(dir.path().join("guest-vm.wasm"), broken).expect("write");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let health = refused(&server, "the refusal").await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("guest module refused"), "{health}");
    assert!(health["brain"]["last_refusal_at"].is_string());

    std::fs::remove_file(dir.path().join("guest-vm.wasm")).expect("remove");
    let health =
        wait_health(&server, Duration::from_secs(30), "the good catalog", |h| h["catalog"]["source"] == json!("brain"))
            .await;
    let health = if health["brain"]["last_refusal"].is_null() {
        health
    } else {
        wait_health(&server, Duration::from_secs(5), "the refusal cleared", |h| h["brain"]["last_refusal"].is_null())
            .await
    };
    assert!(health["brain"]["last_refusal_at"].is_null(), "{health}");
    assert!(health["brain"]["refusals"].as_u64() >= Some(1), "the count stays: {health}");
    let m = metrics(&server).await;
    assert!(metric_value(&m, "avap_catalog_refusals_total{reason=\"guest_vetting\"}") >= 1.0, "{m}");
}

/// The commands brain/README.md gives for a CA and certificates, run as
/// written (the block after `<!-- tls-commands -->`), then a host syncs
/// from a brain serving those certificates with mutual TLS, connecting to
/// 127.0.0.1 by address (the certificate's IP name) with no
/// `BRAIN_TLS_DOMAIN`.
#[tokio::test]
async fn the_documented_tls_commands_make_certificates_a_host_syncs_with() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../brain/README.md")).expect("README");
    let after = readme.split_once("<!-- tls-commands -->").expect("the marked block in brain/README.md").1;
    let block = after.split_once("```sh\n").expect("a sh block").1.split_once("```").expect("its end").0;
    let files = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(files.path())
        .output()
        .expect("bash runs (openssl is on the machine)");
    assert!(
        out.status.success(),
        "the documented commands failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read(files.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let tls =
        TlsConfig { cert_pem: read("brain.pem"), key_pem: read("brain.key"), client_ca_pem: Some(read("ca.pem")) };
    let brain = BrainProc::start(BrainConfig { tls: Some(tls), ..brain_config(None) }).await;
    let path = |name: &str| files.path().join(name);
    let (server, _) = host_for(brain.port, |c| {
        c.brain_tls_ca = Some(path("ca.pem"));
        c.brain_client_cert = Some(path("host.pem"));
        c.brain_client_key = Some(path("host.key"));
    })
    .await;
    let health =
        wait_health(&server, Duration::from_secs(30), "the TLS sync", |h| h["catalog"]["source"] == json!("brain"))
            .await;
    assert_eq!(health["brain"]["transport"], json!("tls"));
    assert_eq!(health["brain"]["address"], json!(format!("https://127.0.0.1:{}", brain.port)));
    server.assert_healthy().await;
}

/// The folder of a release as an operator copies it in: the module and its
/// `.sig`, its precompiled artifact and that artifact's `.sig`, the
/// artifact first (the brain waits for the whole set to match).
async fn release_files(
    dir: &std::path::Path,
    version: &str,
    module_key: &GuestSigningKey,
    artifact_key: &GuestSigningKey,
    engine: Option<[u8; 32]>,
) -> Vec<u8> {
    let module = guest_with_version(version);
    precompile_into(dir, &module, artifact_key, engine).await;
    let sig = serde_json::to_string_pretty(&module_key.sign_file(&module)).expect("json");
    std::fs::write(dir.join("guest-vm.wasm.sig"), sig).expect("write");
    std::fs::write(dir.join("guest-vm.wasm"), &module).expect("write");
    module
}

/// `/health` once `version` is live, and a script run on it.
async fn swapped_to(server: &Server, version: &str) -> Value {
    let health =
        wait_health(server, Duration::from_secs(60), version, |h| h["guest"]["version"] == json!(version)).await;
    let (status, body) = server.run("addVar(a, 20)\nb = a * 2 + 2\naddResult(b)").await;
    assert_eq!((status, &body["result"]), (200, &json!({"b": 42})), "{body}");
    assert_eq!(health["brain"]["refusals"], json!(0), "an artifact never refuses a catalog: {health}");
    health
}

/// The release's precompiled guest, through the real brain, gRPC and a
/// host: taken (loaded without compiling) when the release key signed it
/// for this module and this engine; refused, and the module compiled, when
/// another key signed it or it was built for another engine.
#[tokio::test]
async fn a_precompiled_guest_is_loaded_only_when_the_release_signed_it_for_this_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let release = GuestSigningKey::generate().expect("key");
    let stranger = GuestSigningKey::generate().expect("key");
    let module = release_files(dir.path(), "9.9.5", &release, &release, None).await;
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |c| {
        c.guest_keys = vec![release.public()].into();
        empty_cache(c, &cache);
    })
    .await;
    let health = swapped_to(&server, "9.9.5").await;
    assert_eq!(health["guest"]["precompiled"], json!(true), "{health}");
    assert!(health["guest"]["artifact_refused"].is_null(), "{health}");
    assert_eq!(health["guest"]["digest"], json!(avap_host::runtime::module_digest(&module)));

    // Signed by a key the host does not hold: compiled instead.
    release_files(dir.path(), "9.9.6", &release, &stranger, None).await;
    let health = swapped_to(&server, "9.9.6").await;
    assert_eq!(health["guest"]["precompiled"], json!(false), "{health}");
    let why = health["guest"]["artifact_refused"].as_str().unwrap_or("");
    assert!(why.contains("does not trust") && why.contains(&stranger.public().id()), "{health}");

    // Built (so its signature says) for another engine: never read.
    let foreign = [0xee; 32];
    release_files(dir.path(), "9.9.7", &release, &release, Some(foreign)).await;
    let health = swapped_to(&server, "9.9.7").await;
    assert_eq!(health["guest"]["precompiled"], json!(false), "{health}");
    let why = health["guest"]["artifact_refused"].as_str().unwrap_or("");
    assert!(why.contains("compiled for engine") && why.contains(&hex_of(&foreign)), "{health}");
    server.assert_healthy().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Artifacts the real brain never publishes (it checks each pair first),
/// as a broken or compromised brain could send them, sealed: an unsigned
/// one, one altered after signing, one of another module. The host refuses
/// each, compiles the module, and takes the catalog.
#[tokio::test]
async fn a_precompiled_guest_the_brain_would_not_publish_is_refused_by_the_host() {
    use avap_brain::catalog::{Signer, build, seal_until};
    use avap_wire::catalog::{GUEST_ARTIFACT_ENTRY, TYPE_GUEST_ARTIFACT};
    use avap_wire::guest_sig::ArtifactClaim;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let release = GuestSigningKey::generate().expect("key");
    let keys = keys();
    let mut serial = avap_wire::manifest::now_ms();
    // The folder's catalog, built as the brain builds it, with its artifact
    // entry changed by `tamper`, then sealed.
    let mut sealed = |tamper: &dyn Fn(&mut CommandResponse)| {
        let mut built = build(&Signer { keys: &keys, guest_key: None }, Some(dir.path())).expect("builds");
        let entry = built.commands.iter_mut().find(|e| e.name == GUEST_ARTIFACT_ENTRY).expect("an artifact entry");
        tamper(entry);
        entry.hash = avap_wire::catalog::entry_hash(&entry.code);
        serial += 1;
        seal_until(&keys, &built, serial, "2026-12-01T00:00:00Z".into(), later()).expect("seal")
    };
    let repack = |entry: &mut CommandResponse, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = avap_wire::package::verify(keys.catalog_entry(), &entry.code).expect("verifies").to_vec();
        f(&mut bytes);
        entry.code = avap_wire::package::pack(keys.catalog_entry(), &bytes).expect("pack");
    };

    // Unsigned: the claim without its signature.
    release_files(dir.path(), "9.9.2", &release, &release, None).await;
    let unsigned = sealed(&|entry| {
        let claim = ArtifactClaim::from_interface_json(&entry.interface_json).expect("claim");
        entry.interface_json = ArtifactClaim { signature: None, ..claim }.to_interface_json();
    });
    assert!(unsigned.commands.iter().any(|e| e.r#type == TYPE_GUEST_ARTIFACT));
    let (served, port, _stop) = stand_in(unsigned).await;
    let (server, _) = host_for(port, |c| {
        c.guest_keys = vec![release.public()].into();
        empty_cache(c, &cache);
    })
    .await;
    let health = swapped_to(&server, "9.9.2").await;
    assert_eq!(health["guest"]["precompiled"], json!(false), "{health}");
    assert!(health["guest"]["artifact_refused"].as_str().unwrap_or("").contains("not signed"), "{health}");

    // Altered after signing: one byte of its machine code.
    release_files(dir.path(), "9.9.3", &release, &release, None).await;
    *served.lock().expect("lock") = sealed(&|entry| {
        repack(entry, &|bytes| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        })
    });
    let health = swapped_to(&server, "9.9.3").await;
    assert_eq!(health["guest"]["precompiled"], json!(false), "{health}");
    assert!(health["guest"]["artifact_refused"].as_str().unwrap_or("").contains("does not verify"), "{health}");

    // Another module's (9.9.3's artifact, signed, beside 9.9.4).
    let other = build(&Signer { keys: &keys, guest_key: None }, Some(dir.path())).expect("builds");
    let other = other.commands.into_iter().find(|e| e.name == GUEST_ARTIFACT_ENTRY).expect("entry");
    let module = guest_with_version("9.9.4");
    std::fs::write(
        dir.path().join("guest-vm.wasm.sig"),
        serde_json::to_string(&release.sign_file(&module)).expect("json"),
    )
    .expect("write");
    std::fs::write(dir.path().join("guest-vm.wasm"), &module).expect("write");
    precompile_into(dir.path(), &module, &release, None).await;
    *served.lock().expect("lock") = sealed(&|entry| *entry = other.clone());
    let health = swapped_to(&server, "9.9.4").await;
    assert_eq!(health["guest"]["precompiled"], json!(false), "{health}");
    assert!(health["guest"]["artifact_refused"].as_str().unwrap_or("").contains("is of module"), "{health}");
    server.assert_healthy().await;
}
