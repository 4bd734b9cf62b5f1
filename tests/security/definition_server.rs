//! What someone between a host and its definition server, or a client of
//! the brain's ports, can do: alter a catalog on a plaintext link, replay
//! it, hold updates back behind keepalives, and hold the brain's ports
//! with connections that never get anywhere.
//!
//! - `catalog_*`: a real brain, a real host, and between them a TCP relay
//!   that changes bytes of the catalog as they pass (or a stand-in that
//!   serves a recorded catalog): every field a host acts on is signed, a
//!   serial names one catalog, and a manifest expires.
//! - `brain_port_*`: the brain's gRPC (plaintext and TLS) and ops ports
//!   close a connection that does not finish its handshake or headers in
//!   time, and hold at most their cap.

use super::*;

use std::sync::Mutex;

use avap_brain::{Brain, BrainConfig};
use avap_host::AppState;
use avap_wire::keys::{KeyScheme, Keys};
use avap_wire::manifest::{MANIFEST_ENTRY, Manifest};
use avap_wire::pb::{
    CatalogResponse, CommandRequest, CommandResponse, DefinitionEngine, DefinitionEngineServer, Empty,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// A brain on 127.0.0.1, served until the returned sender is dropped.
async fn brain(config: BrainConfig) -> (Brain, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let brain = Brain::new(config).expect("brain");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(brain.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    (brain, addr, stop)
}

/// A host that follows the definition server on `port` (plaintext, `--dev`).
async fn host_following(port: u16) -> (Server, Arc<AppState>) {
    let config = config(|c| {
        c.standalone = false;
        c.brain_host = Some("127.0.0.1".into());
        c.brain_port = port;
        c.sync_poll_secs = 1;
        c.sync_startup_timeout_ms = 1500;
    });
    let state = AppState::new(&config).await.expect("state");
    let sync = avap_host::catalog::sync::SyncConfig::from_config(&config).expect("sync config");
    avap_host::catalog::sync::start(state.clone(), sync).await;
    (Server::with_state(state.clone()).await, state)
}

async fn health_when(server: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
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

/// `addResult`'s interface as the brain serves it, and the same with one
/// byte changed: a host that took it would not run `addResult`.
const INTERFACE: &[u8] = br#"[{"item":"sourceVariable","type":"variable"}]"#;
const TAMPERED: &[u8] = br#"[{"item":"sourceVariablf","type":"variable"}]"#;

/// A TCP relay to `upstream` that, while `tamper` is set, changes
/// [`INTERFACE`] to [`TAMPERED`] in what the server sends: what anyone on a
/// plaintext link can do (gRPC over HTTP/2 has no checksum of its own).
#[derive(Clone)]
struct Relay {
    port: u16,
    tamper: Arc<std::sync::atomic::AtomicBool>,
    changed: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay = Relay {
            port: listener.local_addr().expect("addr").port(),
            tamper: Arc::default(),
            changed: Arc::default(),
            links: Arc::default(),
        };
        let me = relay.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(copy(client_read, server_write, None));
                let down = tokio::spawn(copy(server_read, client_write, Some(me.clone())));
                me.links.lock().expect("lock").extend([up.abort_handle(), down.abort_handle()]);
            }
        });
        relay
    }

    /// Cuts every link through the relay (the host reconnects).
    fn cut(&self) {
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }
}

/// Copies `from` to `to`; with a relay, changes the interface while it says
/// so. Bytes that could be the start of one are held back until the next
/// read (or 20 ms of quiet), so a match split across reads is found too.
async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, relay: Option<Relay>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = if pending.is_empty() {
            from.read(&mut buf).await
        } else {
            match tokio::time::timeout(Duration::from_millis(20), from.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    if to.write_all(&pending).await.is_err() {
                        return;
                    }
                    pending.clear();
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.write_all(&pending).await;
                return;
            }
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let Some(relay) = &relay else {
            if to.write_all(&pending).await.is_err() {
                return;
            }
            pending.clear();
            continue;
        };
        if relay.tamper.load(Ordering::SeqCst) {
            let mut at = 0;
            while let Some(i) = pending[at..].windows(INTERFACE.len()).position(|w| w == INTERFACE) {
                let start = at + i;
                pending[start..start + INTERFACE.len()].copy_from_slice(TAMPERED);
                relay.changed.fetch_add(1, Ordering::SeqCst);
                at = start + INTERFACE.len();
            }
        }
        let keep = pending.len().min(INTERFACE.len() - 1);
        let send = pending.len() - keep;
        if to.write_all(&pending[..send]).await.is_err() {
            return;
        }
        pending.drain(..send);
    }
}

/// One byte of `addResult`'s `interface_json` changed on a plaintext link:
/// the package and its hash are intact, so only a signature over the
/// interface itself can tell. A new host refuses the catalog (and keeps its
/// built-in `addResult`); a host already live on that serial refuses it
/// when its reconnection brings the altered copy.
#[tokio::test]
async fn catalog_an_interface_changed_on_the_way_is_refused() {
    let _serial = SERIAL.lock().await;
    let (brain, addr, _stop) = brain(BrainConfig::dev()).await;
    let relay = Relay::start(addr).await;
    let script = "addVar(a, 1)\naddResult(a)";

    // A new host, the relay altering from the start.
    relay.tamper.store(true, Ordering::SeqCst);
    let (fresh, _) = host_following(relay.port).await;
    let health = health_when(&fresh, "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1)).await;
    assert!(relay.changed.load(Ordering::SeqCst) >= 1, "the relay changed the interface");
    let why = health["brain"]["last_refusal"].as_str().unwrap_or("");
    assert!(why.contains("`addResult` (function): its interface_json"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"), "nothing of the altered catalog applies");
    let (status, body) = fresh.run(script).await;
    assert_eq!((status, &body["result"]), (200, &json!({"a": 1})), "addResult still runs: {body}");

    // A host live on the brain's catalog; the relay starts altering and
    // cuts the link, so the reconnection brings the same serial, altered.
    relay.tamper.store(false, Ordering::SeqCst);
    let (live, _) = host_following(relay.port).await;
    let serial = brain.serial();
    health_when(&live, "the catalog", |h| h["catalog"]["manifest_serial"] == json!(serial)).await;
    let changed = relay.changed.load(Ordering::SeqCst);
    relay.tamper.store(true, Ordering::SeqCst);
    relay.cut();
    let health = health_when(&live, "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1)).await;
    assert!(relay.changed.load(Ordering::SeqCst) > changed, "the reconnection's catalog was altered");
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("interface_json"), "{health}");
    assert_eq!(health["catalog"]["manifest_serial"], json!(serial), "the live catalog stays");
    assert!(health["catalog"]["interface_mismatches"].as_array().is_some_and(Vec::is_empty), "{health}");
    let (status, body) = live.run(script).await;
    assert_eq!((status, &body["result"]), (200, &json!({"a": 1})), "addResult still runs: {body}");
    report(format!(
        "catalog integrity: {} altered interfaces relayed, every one refused; addResult runs on both hosts",
        relay.changed.load(Ordering::SeqCst)
    ));
}

/// Serves a fixed catalog on `WatchCatalog` (then keepalives every 100 ms,
/// for ever) and on `SyncCatalog`: a recorder replaying what it saw.
#[derive(Clone)]
struct Recorder(Arc<Mutex<CatalogResponse>>);

#[tonic::async_trait]
impl DefinitionEngine for Recorder {
    async fn get_command(&self, _: Request<CommandRequest>) -> Result<Response<CommandResponse>, Status> {
        Err(Status::not_found("not here"))
    }

    async fn sync_catalog(&self, _: Request<Empty>) -> Result<Response<CatalogResponse>, Status> {
        Ok(Response::new(self.0.lock().expect("lock").clone()))
    }

    type WatchCatalogStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<CatalogResponse, Status>> + Send>>;

    async fn watch_catalog(&self, _: Request<Empty>) -> Result<Response<Self::WatchCatalogStream>, Status> {
        let first = self.0.lock().expect("lock").clone();
        let version_hash = first.version_hash.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let keepalive =
                    CatalogResponse { keepalive: true, version_hash: version_hash.clone(), ..Default::default() };
                if tx.send(Ok(keepalive)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

async fn recorder(catalog: CatalogResponse) -> (Recorder, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let recorder = Recorder(Arc::new(Mutex::new(catalog)));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DefinitionEngineServer::new(recorder.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (recorder, port)
}

fn keys() -> Keys {
    Keys::new(avap_wire::auth::DEFAULT_INTERNAL_KEY.as_bytes(), KeyScheme::Separated)
}

/// The brain's catalog with its manifest replaced: same entries, `serial`,
/// `issued_at`, expiring at `expires_at_ms`.
fn resealed(catalog: &CatalogResponse, serial: u64, issued_at: &str, expires_at_ms: u64) -> CatalogResponse {
    let entries: Vec<CommandResponse> = catalog.commands.iter().filter(|c| c.name != MANIFEST_ENTRY).cloned().collect();
    let old = catalog.commands.iter().find(|c| c.name == MANIFEST_ENTRY).expect("a manifest");
    let pin = Manifest::open(old, keys().manifest()).expect("opens").guest;
    let manifest = Manifest::describe(serial, issued_at.into(), expires_at_ms, &entries, pin);
    let mut commands = entries;
    commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
    CatalogResponse {
        total_count: commands.len() as i32,
        version_hash: catalog.version_hash.clone(),
        commands,
        keepalive: false,
    }
}

/// Keepalives are not signed: a link that brings only them (and the same
/// old catalog) past the manifest's expiry is `stale`, not `live`; a
/// recorded catalog replayed after its expiry is refused; and one serial
/// names one manifest.
#[tokio::test]
async fn catalog_keepalives_do_not_keep_an_expired_catalog_live() {
    let _serial = SERIAL.lock().await;
    let (brain, _, _stop) = brain(BrainConfig::dev()).await;
    let real = CatalogResponse::clone(&brain.catalog());
    let now = avap_wire::manifest::now_ms();
    let serial = brain.serial() + 1;
    let (recorded, port) = recorder(resealed(&real, serial, "2026-12-01T00:00:00Z", now + 2_500)).await;
    let (server, _) = host_following(port).await;
    let health = health_when(&server, "the catalog", |h| h["catalog"]["manifest_serial"] == json!(serial)).await;
    assert_eq!(health["brain"]["state"], json!("live"));
    let health = health_when(&server, "staleness", |h| h["brain"]["state"] == json!("stale")).await;
    assert!(health["brain"]["last_error"].as_str().unwrap_or("").contains("expired"), "{health}");
    let (_, text) = server.get_text("/metrics").await;
    assert!(text.contains("avap_brain_up 0"), "{text}");
    // Keepalives still arrive: the link is up, the catalog is not renewed.
    let seen = health["brain"]["last_message_at"].clone();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = health_when(&server, "more keepalives", |h| h["brain"]["last_message_at"] != seen).await;
    assert_eq!(later["brain"]["state"], json!("stale"), "{later}");

    // The same serial with another manifest (any signer's mistake, or a
    // replay of one): refused, whatever it says. Through a relay, cut so
    // the reconnection's watch stream brings the second one.
    *recorded.0.lock().expect("lock") = resealed(&real, serial, "2026-12-01T00:00:01Z", now + 3_600_000);
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let (again, _) = host_following(relay.port).await;
    health_when(&again, "the first copy", |h| h["catalog"]["manifest_serial"] == json!(serial)).await;
    *recorded.0.lock().expect("lock") = resealed(&real, serial, "2026-12-01T00:00:02Z", now + 3_600_000);
    relay.cut();
    let health = health_when(&again, "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1)).await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("the manifest differs"), "{health}");

    // Replayed after its expiry to a host that has never synced: refused.
    *recorded.0.lock().expect("lock") = resealed(&real, serial + 1, "2026-12-01T00:00:03Z", now - 1);
    let (late, _) = host_following(port).await;
    let health = health_when(&late, "the refusal", |h| h["brain"]["refusals"].as_u64() >= Some(1)).await;
    assert!(health["brain"]["last_refusal"].as_str().unwrap_or("").contains("expired"), "{health}");
    assert_eq!(health["catalog"]["source"], json!("built-in"));
    report("catalog freshness: keepalives past the manifest's expiry show stale; an expired or re-signed same-serial catalog is refused".into());
}

/// Reads until the peer closes; how long that took from `since`, or `None`
/// if it stayed open for `within`.
async fn closed(stream: &mut TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        let left = within.checked_sub(since.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The brain's ports (gRPC plaintext and TLS, the ops port with no auth):
/// a connection that sends nothing, half a request, half an HTTP/2
/// preface or half a ClientHello is closed at the header timeout; beyond
/// the connection cap a client waits until a slot frees.
#[tokio::test]
async fn brain_ports_close_connections_that_never_get_anywhere() {
    let _serial = SERIAL.lock().await;
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "avap test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    let timeout = Duration::from_millis(500);
    let plain = BrainConfig { header_timeout: timeout, max_connections: 8, ..BrainConfig::dev() };
    let tls = BrainConfig {
        tls: Some(avap_brain::TlsConfig {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            client_ca_pem: None,
        }),
        ..plain.clone()
    };
    let (plain_brain, plain_addr, _stop_plain) = brain(plain).await;
    let (_, tls_addr, _stop_tls) = brain(tls).await;
    let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ops_addr = ops.local_addr().expect("addr");
    let (_stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(plain_brain.clone().serve_http(ops, async move {
        let _ = ops_stopped.await;
    }));

    let started = Instant::now();
    let mut cases: Vec<(&str, TcpStream)> = Vec::new();
    for (what, addr, bytes) in [
        ("gRPC, nothing sent", plain_addr, &b""[..]),
        ("gRPC, half an HTTP/2 preface", plain_addr, &b"PRI * HTTP/2.0\r\n"[..]),
        ("TLS, no ClientHello", tls_addr, &b""[..]),
        ("TLS, half a ClientHello", tls_addr, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]),
        ("ops, nothing sent", ops_addr, &b""[..]),
        ("ops, half a request", ops_addr, &b"GET /metrics HTTP/1.1\r\nHost: brain\r\n"[..]),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        cases.push((what, stream));
    }
    for (what, stream) in &mut cases {
        let took =
            closed(stream, started, Duration::from_secs(10)).await.unwrap_or_else(|| panic!("{what}: kept open"));
        assert!(took >= timeout / 2 && took < timeout * 6, "{what}: closed after {took:?}");
    }

    // The cap: eight silent connections hold every slot; a ninth client
    // waits, and is served once they are closed at the timeout.
    let held: Vec<TcpStream> = connect_many(plain_addr, 8).await;
    let asked = Instant::now();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{plain_addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut request = Request::new(Empty {});
    request.metadata_mut().insert("x-avap-auth", avap_wire::auth::DEFAULT_API_KEY.parse().expect("ascii"));
    let answer = avap_wire::pb::DefinitionEngineClient::new(channel).sync_catalog(request).await;
    assert!(answer.is_ok(), "{answer:?}");
    let waited = asked.elapsed();
    assert!(waited >= timeout / 2, "served at once though every slot was held: {waited:?}");
    drop(held);
    report(format!(
        "brain ports: {} stalled connections closed within {timeout:?}; over the cap of 8, a client waited {waited:?}",
        cases.len()
    ));
}

async fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connect"));
    }
    out
}
