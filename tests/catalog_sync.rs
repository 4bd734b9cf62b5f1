//! The host with a real definition server: `avap-brain` in-process on
//! 127.0.0.1:0, the host syncing over loopback gRPC, scripts over real HTTP.
//! A "legacy" server (no `WatchCatalog`, like the original servers) stands in
//! where a test needs a catalog the real brain would never sign wrongly.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avap_brain::{Brain, BrainConfig};
use avap_host::{AppState, Config};
use avap_wire::pb::{
    CatalogResponse, CommandRequest, CommandResponse, DefinitionEngine, DefinitionEngineServer, Empty,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::{Server, config};

/// A running brain; stops when dropped.
pub(crate) struct BrainProc {
    pub(crate) brain: Brain,
    pub(crate) port: u16,
    _stop: oneshot::Sender<()>,
}

impl BrainProc {
    pub(crate) async fn start(config: BrainConfig) -> BrainProc {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        BrainProc::serve_on(listener, config)
    }

    pub(crate) fn serve_on(listener: TcpListener, config: BrainConfig) -> BrainProc {
        let port = listener.local_addr().expect("addr").port();
        let brain = Brain::new(config).expect("brain");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(brain.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        BrainProc { brain, port, _stop: stop }
    }
}

pub(crate) fn brain_config(dir: Option<&Path>) -> BrainConfig {
    BrainConfig {
        catalog_dir: dir.map(Path::to_path_buf),
        poll_interval: Duration::from_millis(50),
        ..BrainConfig::dev()
    }
}

/// A host that syncs from `port`.
pub(crate) async fn host_for(port: u16, f: impl FnOnce(&mut Config)) -> (Server, Arc<AppState>) {
    let config = config(|c| {
        c.standalone = false;
        c.brain_host = Some("127.0.0.1".into());
        c.brain_port = port;
        c.sync_poll_secs = 1;
        c.sync_startup_timeout_ms = 1500;
        f(c)
    });
    let state = AppState::new(&config).await.expect("state");
    let sync = avap_host::catalog::sync::SyncConfig::from_config(&config).expect("sync config");
    avap_host::catalog::sync::start(state.clone(), sync).await;
    (Server::with_state(state.clone()).await, state)
}

/// Polls `/health` until `pred` holds, or fails after `within`.
pub(crate) async fn wait_health(server: &Server, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, text) = server.get_text("/health").await;
        let health: Value = serde_json::from_str(&text).expect("health json");
        if pred(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; health: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The built-in guest with its version replaced (same length) in its one
/// version record, so a test has a real, different interpreter to roll out.
pub(crate) fn guest_with_version(version: &str) -> Vec<u8> {
    let record = avap_guest_vm::GUEST_VERSION_RECORD.as_bytes();
    assert_eq!(version.len(), avap_guest_vm::GUEST_VERSION.len(), "patch must keep the length");
    let module = avap_host::GUEST_WASM;
    let hits: Vec<usize> =
        module.windows(record.len()).enumerate().filter(|(_, w)| *w == record).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "the version record must occur exactly once in the module");
    let at = hits[0] + avap_guest_vm::GUEST_VERSION_PREFIX.len();
    let mut patched = module.to_vec();
    patched[at..at + version.len()].copy_from_slice(version.as_bytes());
    patched
}

/// What `avap precompile` writes beside a guest module, made the same way
/// (`SandboxEngine::precompile`: the host's engine settings, the module as
/// hosts compile it): `guest-vm.cwasm` and `guest-vm.cwasm.sig` in `dir`,
/// signed by `key`. `engine`: claim another engine's identity than the one
/// it was compiled for. Returns the signed statement.
pub(crate) async fn precompile_into(
    dir: &Path,
    module: &[u8],
    key: &avap_wire::guest_sig::GuestSigningKey,
    engine: Option<[u8; 32]>,
) -> avap_wire::guest_sig::ArtifactStatement {
    let limits = avap_host::runtime::Limits { max_concurrency: 1, ..avap_host::runtime::Limits::default() };
    let sandbox = avap_host::runtime::SandboxEngine::new(&limits).expect("engine");
    let precompiled = sandbox.precompile(module).await.expect("precompiles");
    let statement = avap_wire::guest_sig::ArtifactStatement {
        engine: engine.unwrap_or(precompiled.statement.engine),
        ..precompiled.statement
    };
    std::fs::write(dir.join("guest-vm.cwasm"), &precompiled.artifact).expect("write");
    let sig = serde_json::to_string_pretty(&key.sign_artifact(&statement)).expect("json");
    std::fs::write(dir.join("guest-vm.cwasm.sig"), sig).expect("write");
    statement
}

/// A compile cache of a host's own, empty: what it finds there (a module
/// compiled by an earlier test) would hide whether it took the artifact.
pub(crate) fn empty_cache(c: &mut Config, dir: &tempfile::TempDir) {
    c.cache_dir = dir.path().join("cache").display().to_string();
}

#[tokio::test]
async fn host_syncs_the_catalog_at_start_up() {
    let brain = BrainProc::start(brain_config(None)).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let catalog = brain.brain.catalog();
    // Applying includes preparing the guest's snapshot, which a debug build
    // may not finish within the start-up deadline; the sync carries on.
    let health = wait_health(&server, Duration::from_secs(20), "the brain's catalog", |h| {
        h["catalog"]["source"] == json!("brain")
    })
    .await;
    assert_eq!(health["catalog"]["version_hash"], json!(catalog.version_hash));
    assert_eq!(health["catalog"]["commands"], json!(28));
    // The manifest's expiry shows before it comes (RFC 3339, in the future).
    let expires = health["catalog"]["manifest_expires_at"].as_str().expect("an expiry");
    let synced = health["catalog"]["last_sync"].as_str().expect("a sync time");
    assert!(expires.ends_with('Z') && expires > synced, "expires {expires}, synced {synced}");
    assert_eq!(health["brain"]["reachable"], json!(true));
    // Same module as the built-in: no swap.
    assert_eq!(health["guest"]["source"], json!("built-in"));
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_wrong_api_key_leaves_the_host_on_its_built_in_catalog() {
    let brain = BrainProc::start(brain_config(None)).await;
    let (server, _) = host_for(brain.port, |c| c.api_key = "not-the-key".into()).await;
    let health =
        wait_health(&server, Duration::from_secs(5), "the refusal", |h| !h["brain"]["last_error"].is_null()).await;
    assert!(health["brain"]["last_error"].as_str().unwrap_or("").contains("UNAUTHENTICATED"), "{health}");
    assert_eq!(health["brain"]["reachable"], json!(false));
    assert_eq!(health["catalog"]["source"], json!("built-in"));
    assert!(health["catalog"]["note"].is_string(), "health must say it is not synced: {health}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn host_serves_while_the_brain_is_down_and_syncs_when_it_comes_up() {
    // The port is bound (so no other process takes it) but nobody serves it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (server, _) = host_for(port, |c| c.sync_startup_timeout_ms = 300).await;
    let health =
        wait_health(&server, Duration::from_secs(5), "unreachable", |h| h["brain"]["reachable"] == json!(false)).await;
    assert_eq!(health["catalog"]["source"], json!("built-in"));
    server.assert_healthy().await;

    let brain = BrainProc::serve_on(listener, brain_config(None));
    let health =
        wait_health(&server, Duration::from_secs(15), "the sync", |h| h["catalog"]["source"] == json!("brain")).await;
    assert_eq!(health["catalog"]["version_hash"], json!(brain.brain.catalog().version_hash));
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_new_avap_command_is_usable_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let script = "msg = greet(\"Ann\")\naddResult(msg)";
    let (status, body) = server.run(script).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("not found"), "{body}");

    std::fs::write(dir.path().join("greet.avap"), "function greet(who) {\n  return `Hello ${who}`\n}\n")
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = server.run(script).await;
        if status == 200 {
            assert_eq!(body["result"], json!({"msg": "Hello Ann"}));
            break;
        }
        assert!(Instant::now() < deadline, "greet never became usable: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As a command statement too.
    let (status, body) = server.run("greet(\"Bo\")\naddVar(x, 1)\naddResult(x)").await;
    assert_eq!(status, 200, "{body}");
}

/// Serves a fixed catalog and no `WatchCatalog`, like the original servers.
#[derive(Clone)]
pub(crate) struct LegacyBrain(pub(crate) Arc<Mutex<CatalogResponse>>);

#[tonic::async_trait]
impl DefinitionEngine for LegacyBrain {
    async fn get_command(&self, _: Request<CommandRequest>) -> Result<Response<CommandResponse>, Status> {
        Err(Status::not_found("not served here"))
    }

    async fn sync_catalog(&self, _: Request<Empty>) -> Result<Response<CatalogResponse>, Status> {
        Ok(Response::new(self.0.lock().expect("lock").clone()))
    }

    type WatchCatalogStream = tokio_stream::Empty<Result<CatalogResponse, Status>>;

    async fn watch_catalog(&self, _: Request<Empty>) -> Result<Response<Self::WatchCatalogStream>, Status> {
        Err(Status::unimplemented("legacy server"))
    }
}

pub(crate) async fn start_legacy(catalog: CatalogResponse) -> (LegacyBrain, u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let legacy = LegacyBrain(Arc::new(Mutex::new(catalog)));
    let (stop, stopped) = oneshot::channel::<()>();
    let svc = DefinitionEngineServer::new(legacy.clone());
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async move {
            let _ = stopped.await;
        },
    ));
    (legacy, port, stop)
}

/// An entry as the original servers sign it: with the shared secret itself,
/// and, for a built-in's name, the built-in's interface (as theirs list it).
pub(crate) fn signed(name: &str, ty: &str, payload: &[u8]) -> CommandResponse {
    let key = avap_wire::auth::DEFAULT_INTERNAL_KEY.as_bytes();
    let interface = match avap_guest_vm::builtins::Builtin::from_name(name) {
        Some(b) => {
            let items: Vec<Value> = b.spec().params.iter().map(|p| json!({"item": p.name, "type": "var"})).collect();
            Value::Array(items).to_string()
        }
        None => "[]".into(),
    };
    avap_wire::catalog::signed_entry(key, name, ty, interface, payload).expect("sign")
}

/// A host configured for the original servers (their key scheme, no manifest).
pub(crate) fn original_servers(c: &mut Config) {
    c.dev = false;
    c.original_servers = true;
}

pub(crate) fn with_version(mut commands: Vec<CommandResponse>) -> CatalogResponse {
    let version_hash = avap_wire::catalog::version_hash(&commands);
    commands.sort_by(|a, b| a.name.cmp(&b.name));
    CatalogResponse { total_count: commands.len() as i32, version_hash, commands, keepalive: false }
}

#[tokio::test]
async fn a_legacy_server_is_polled_and_a_tampered_catalog_is_refused_whole() {
    let good = with_version(vec![
        signed("addVar", "function", b"# python"),
        signed("addResult", "function", b"# python"),
        signed("legacyThing", "function", b"def legacyThing(): pass"),
        signed("twice", "avap", b"function twice(x) {\n  return x * 2\n}"),
    ]);
    let (legacy, port, _stop) = start_legacy(good.clone()).await;
    let (server, _) = host_for(port, original_servers).await;
    let health = wait_health(&server, Duration::from_secs(20), "poll mode", |h| {
        h["brain"]["mode"] == json!("poll") && h["catalog"]["version_hash"] == json!(good.version_hash)
    })
    .await;
    assert_eq!(health["catalog"]["source"], json!("brain"));

    let (status, body) = server.run("y = twice(21)\naddResult(y)").await;
    assert_eq!((status, &body["result"]), (200, &json!({"y": 42})), "{body}");
    let (status, body) = server.run("legacyThing()").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or("").contains("not supported by this host"), "{body}");
    let (status, body) = server.run("getListLen(xs, n)").await;
    assert_eq!(status, 400, "a built-in the catalog does not hold is not found");
    assert!(body["error"].as_str().unwrap_or("").contains("not found"), "{body}");

    // One flipped byte in one entry: the whole update must be refused.
    let mut bad = with_version(vec![
        signed("addVar", "function", b"# python"),
        signed("addResult", "function", b"# python"),
        signed("getListLen", "function", b"# python"),
        signed("thrice", "avap", b"function thrice(x) {\n  return x * 3\n}"),
    ]);
    let entry = bad.commands.iter_mut().find(|c| c.name == "thrice").expect("entry");
    let at = entry.code.len() - 3;
    entry.code[at] ^= 0x20;
    *legacy.0.lock().expect("lock") = bad;
    let health =
        wait_health(&server, Duration::from_secs(5), "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1))
            .await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("thrice"), "{health}");
    assert_eq!(health["catalog"]["version_hash"], json!(good.version_hash), "the old catalog stays");
    let (status, _) = server.run("y = thrice(1)").await;
    assert_eq!(status, 400, "nothing of the refused catalog is live");
    let (status, body) = server.run("y = twice(2)\naddResult(y)").await;
    assert_eq!((status, &body["result"]), (200, &json!({"y": 4})));
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("avap_catalog_syncs_total{result=\"refused\"}"), "{metrics}");
}

#[tokio::test]
async fn a_new_guest_is_swapped_in_under_load_with_no_failed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let old_version = avap_guest_vm::GUEST_VERSION;
    let new_version = "9.9.9";

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (server.client.clone(), format!("{}/api/v1/execute", server.base), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(Instant, u16, String)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = client
                    .post(&url)
                    .json(&json!({"script": "addVar(a, 20)\nb = a * 2 + 2\naddResult(b)"}))
                    .send()
                    .await
                    .expect("request");
                let version =
                    resp.headers().get("x-avap-guest-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("json");
                let status = if body["result"] == json!({"b": 42}) { status } else { 0 };
                seen.push((Instant::now(), status, version));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = Instant::now();
    std::fs::write(dir.path().join("guest-vm.wasm"), guest_with_version(new_version)).expect("write");
    wait_health(&server, Duration::from_secs(30), "the swap", |h| h["guest"]["version"] == json!(new_version)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut all = Vec::new();
    for c in clients {
        let seen = c.await.expect("client");
        // Per client, requests are sequential: once new, never old again.
        let first_new = seen.iter().position(|(_, _, v)| v == new_version).expect("saw the new guest");
        assert!(seen[first_new..].iter().all(|(_, _, v)| v == new_version), "went back to the old guest");
        assert!(seen[..first_new].iter().all(|(_, _, v)| v == old_version));
        all.extend(seen);
    }
    let failed = all.iter().filter(|(_, status, _)| *status != 200).count();
    let first_new = all.iter().filter(|(_, _, v)| v == new_version).map(|(t, _, _)| *t).min().expect("new");
    eprintln!(
        "guest swap: {} requests, {failed} failed, publish -> first request on the new guest: {:?}",
        all.len(),
        first_new.duration_since(published)
    );
    assert_eq!(failed, 0, "requests failed during the swap");
    let (_, text) = server.get_text("/health").await;
    let health: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(health["guest"]["source"], json!("brain"));
    assert_eq!(health["guest"]["digest"], json!(avap_host::runtime::module_digest(&guest_with_version(new_version))));
}

/// With the release's precompiled artifact beside it, a new guest is
/// loaded without compiling and serves at once, unprepared (the catalog in
/// each input) while its snapshot compiles; then it runs prepared. Under
/// load, no request fails, and no client goes back to the old guest.
#[tokio::test]
async fn a_precompiled_guest_serves_at_once_and_runs_prepared_once_its_snapshot_is_compiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |c| empty_cache(c, &dir)).await;
    wait_health(&server, Duration::from_secs(30), "the first sync", |h| h["catalog"]["source"] == json!("brain")).await;
    let (old_version, new_version) = (avap_guest_vm::GUEST_VERSION, "9.9.4");
    let module = guest_with_version(new_version);
    let artifact = tempfile::tempdir().expect("tempdir");
    precompile_into(artifact.path(), &module, &avap_wire::guest_sig::dev_signing_key(), None).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (server.client.clone(), format!("{}/api/v1/execute", server.base), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, String)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = client
                    .post(&url)
                    .json(&json!({"script": "addVar(a, 20)\nb = a * 2 + 2\naddResult(b)"}))
                    .send()
                    .await
                    .expect("request");
                let version =
                    resp.headers().get("x-avap-guest-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("json");
                seen.push((if body["result"] == json!({"b": 42}) { status } else { 0 }, version));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The artifact and its .sig, then the module (the brain waits for the
    // whole set to match).
    for name in ["guest-vm.cwasm", "guest-vm.cwasm.sig"] {
        std::fs::copy(artifact.path().join(name), dir.path().join(name)).expect("copy");
    }
    std::fs::write(dir.path().join("guest-vm.wasm"), &module).expect("write");
    let first =
        wait_health(&server, Duration::from_secs(30), "the swap", |h| h["guest"]["version"] == json!(new_version))
            .await;
    assert_eq!(first["guest"]["precompiled"], json!(true), "{first}");
    assert_eq!(first["guest"]["from_artifact"], json!(false), "not this host's own: {first}");
    assert!(first["guest"]["artifact_refused"].is_null(), "{first}");
    assert!(first["guest"]["snapshot"].is_null(), "serving unprepared while the snapshot compiles: {first}");
    let prepared =
        wait_health(&server, Duration::from_secs(60), "the snapshot", |h| h["guest"]["snapshot"].is_object()).await;
    assert_eq!(prepared["guest"]["version"], json!(new_version));
    assert_eq!(prepared["guest"]["precompiled"], json!(true), "the snapshot is of the precompiled guest: {prepared}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let seen = c.await.expect("client");
        let first_new = seen.iter().position(|(_, v)| v == new_version).expect("saw the new guest");
        assert!(seen[first_new..].iter().all(|(_, v)| v == new_version), "went back to the old guest");
        assert!(seen[..first_new].iter().all(|(_, v)| v == old_version));
        let failed: Vec<_> = seen.iter().filter(|(status, _)| *status != 200).collect();
        assert!(failed.is_empty(), "requests failed during the swap: {failed:?}");
        total += seen.len();
    }
    eprintln!("precompiled guest swap: {total} requests, none failed");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains(&format!("avap_guest_info{{version=\"{new_version}\"")), "{metrics}");
}

/// Without a manifest (the original servers) nothing orders two guests but
/// their versions: an older one is refused unless downgrades are allowed.
/// (With a manifest the serial orders them: see
/// `trust::a_staged_roll_out_and_a_roll_back_across_three_hosts_under_load`.)
#[tokio::test]
async fn without_a_manifest_an_older_guest_is_refused_unless_downgrades_are_allowed() {
    let module = guest_with_version("0.0.1");
    let release = avap_wire::guest_sig::GuestSigningKey::generate().expect("key");
    let sig = release.sign(&module);
    let mut guest = signed("avap-guest-vm", "guest-vm", &module);
    guest.interface_json = sig.to_interface_json();
    let catalog =
        with_version(vec![signed("addVar", "function", b"# py"), signed("addResult", "function", b"# py"), guest]);
    let (_legacy, port, _stop) = start_legacy(catalog).await;
    let release_key = release.public();

    let (server, _) = host_for(port, |c| {
        original_servers(c);
        c.guest_keys = vec![release_key.clone()].into();
    })
    .await;
    let health =
        wait_health(&server, Duration::from_secs(10), "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1))
            .await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("older"), "{health}");
    assert_eq!(health["guest"]["version"], json!(avap_guest_vm::GUEST_VERSION));
    assert_eq!(health["catalog"]["source"], json!("built-in"), "the whole catalog is refused with its guest");
    assert_eq!(health["trust"]["catalog"], json!("compat-no-manifest"));
    server.assert_healthy().await;

    let (server, _) = host_for(port, |c| {
        original_servers(c);
        c.guest_keys = vec![release_key.clone()].into();
        c.allow_guest_downgrade = true;
    })
    .await;
    let health =
        wait_health(&server, Duration::from_secs(10), "the downgrade", |h| h["guest"]["version"] == json!("0.0.1"))
            .await;
    assert_eq!(health["catalog"]["source"], json!("brain"));
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_broken_guest_module_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Valid wasm header, garbage after: signed fine, but it cannot compile.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend_from_slice(b"definitely not a module");
    std::fs::write(dir.path().join("guest-vm.wasm"), module).expect("write");
    let brain = BrainProc::start(brain_config(Some(dir.path()))).await;
    let (server, _) = host_for(brain.port, |_| {}).await;
    let health =
        wait_health(&server, Duration::from_secs(10), "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1))
            .await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("guest module refused"), "{health}");
    server.assert_healthy().await;
}

/// The catalog lives in the guest's snapshot, not in each execution's input:
/// 10,000 more commands cost a script that uses none of them nothing, and one
/// that calls one of them finds it.
#[tokio::test]
async fn an_execution_costs_the_same_with_ten_thousand_catalog_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000 {
        let source = format!("function big{i}(a) {{\n  return a + {i}\n}}\n");
        std::fs::write(dir.path().join(format!("big{i}.avap")), source).expect("write");
    }
    let small = BrainProc::start(brain_config(None)).await;
    let large = BrainProc::start(brain_config(Some(dir.path()))).await;
    assert_eq!(large.brain.catalog().commands.len(), 10_029, "with the manifest");
    let (small_host, _) = host_for(small.port, |_| {}).await;
    let (large_host, _) = host_for(large.port, |_| {}).await;
    for (host, commands) in [(&small_host, 28), (&large_host, 10_028)] {
        let health = wait_health(host, Duration::from_secs(60), "the brain's catalog", |h| {
            h["catalog"]["source"] == json!("brain") && h["catalog"]["commands"] == json!(commands)
        })
        .await;
        assert!(health["guest"]["snapshot"].is_object(), "the guest runs prepared: {health}");
    }
    let fuel = |body: &Value| body["usage"]["fuel"].as_u64().expect("fuel");
    for script in ["addVar(a, 1)\naddResult(a)", "x = 50 + 50\ny = x / 2\naddResult(y)"] {
        let (status, with_28) = small_host.run(script).await;
        assert_eq!(status, 200, "{with_28}");
        let (status, with_10k) = large_host.run(script).await;
        assert_eq!(status, 200, "{with_10k}");
        assert_eq!(with_28["result"], with_10k["result"]);
        let (a, b) = (fuel(&with_28), fuel(&with_10k));
        assert!(b <= a + a / 10, "{script:?}: {b} fuel with 10,028 commands against {a} with 28");
    }
    let (status, body) = large_host.run("y = big9999(1)\naddResult(y)").await;
    assert_eq!((status, &body["result"]), (200, &json!({"y": 10_000})), "{body}");
    let (status, _) = small_host.run("y = big9999(1)\naddResult(y)").await;
    assert_eq!(status, 400, "the small catalog has no such command");
}
