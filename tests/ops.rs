//! What an operator's probes see: `/livez`, `/readyz` through the first
//! sync, and the drain at shutdown, over real HTTP against the real server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::catalog_sync::{BrainProc, brain_config, host_for};
use crate::common::{Server, config};

async fn probe(server: &Server, path: &str) -> (u16, Value) {
    let (status, text) = server.get_text(path).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
}

#[tokio::test]
async fn readyz_waits_for_the_first_sync_unless_told_otherwise() {
    // The brain's port is bound but nobody answers yet.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (server, _) = host_for(port, |c| c.sync_startup_timeout_ms = 200).await;
    assert_eq!(probe(&server, "/livez").await, (200, json!({"status": "alive"})));
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], json!("not_ready"));
    assert!(body["reason"].as_str().unwrap_or("").contains("no catalog from the definition server"), "{body}");

    let _brain = BrainProc::serve_on(listener, brain_config(None));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = probe(&server, "/readyz").await;
        if status == 200 {
            assert_eq!(body, json!({"status": "ready"}));
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Standalone hosts, and those told not to wait, are ready at once.
    let standalone = Server::default().await;
    assert_eq!(probe(&standalone, "/readyz").await.0, 200);
    let unbound = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (eager, _) = host_for(unbound.local_addr().expect("addr").port(), |c| {
        c.sync_startup_timeout_ms = 100;
        c.ready_without_brain = true;
    })
    .await;
    assert_eq!(probe(&eager, "/readyz").await.0, 200);
}

#[tokio::test]
async fn probes_need_no_token() {
    let server = Server::start(config(|c| c.api_tokens = vec!["sesame".to_string()].into())).await;
    assert_eq!(probe(&server, "/livez").await.0, 200);
    assert_eq!(probe(&server, "/readyz").await.0, 200);
    let (status, _) = server.get_text("/metrics").await;
    assert_eq!(status, 401, "the rest still does");
}

#[tokio::test]
async fn shutdown_drains_executions_in_flight_then_stops() {
    let state = avap_host::AppState::new(&config(|c| {
        c.fuel = u64::MAX / 4;
        c.timeout_ms = 10_000;
        c.drain_secs = 10;
    }))
    .await
    .expect("state");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(avap_host::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    // A script that runs for a while.
    let slow = "x = 0\nstartLoop(i, 1, 1000000)\n  x = x + i * 3 - i * 2\nendLoop()\naddResult(x)";
    let started = Instant::now();
    let in_flight = {
        let (client, url) = (client.clone(), format!("{base}/api/v1/execute"));
        tokio::spawn(async move {
            let resp = client.post(url).json(&json!({"script": slow})).send().await.expect("request");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!in_flight.is_finished(), "the script must still be running when the drain starts");
    assert!(state.readiness().is_ok());
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reason = state.readiness().expect_err("draining");
    assert!(reason.contains("draining"), "{reason}");

    // The execution in flight finishes, with its answer.
    let (status, body) = in_flight.await.expect("client");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"x": 500_000_500_000_i64}));
    // Then the server stops, within the drain time, and takes nothing new.
    let stopped = tokio::time::timeout(Duration::from_secs(10), serving).await.expect("stops within the drain");
    stopped.expect("task").expect("served cleanly");
    eprintln!("drain: the in-flight execution finished {:?} after it started", started.elapsed());
    let refused = reqwest::Client::new().get(format!("{base}/livez")).send().await;
    assert!(refused.is_err(), "no new connection after the drain");
}

/// What the test binary's subscriber sends where: every JSON log line to
/// memory, every span to an in-process OTLP/HTTP receiver. Installed once
/// for the whole binary (a subscriber is process-wide).
struct Telemetry {
    logs: &'static std::sync::Mutex<Vec<u8>>,
    spans: &'static std::sync::Mutex<Vec<Span>>,
    handle: avap_host::telemetry::Telemetry,
}

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<(String, String)>,
}

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: std::sync::OnceLock<Telemetry> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let spans: &'static std::sync::Mutex<Vec<Span>> = Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let endpoint = otlp_receiver(spans);
        let handle = avap_host::telemetry::init_with(
            avap_host::telemetry::LogFormat::Json,
            Capture(logs),
            false,
            Some(endpoint),
        );
        Telemetry { logs, spans, handle }
    })
}

fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    telemetry().logs
}

/// An OTLP/HTTP receiver on its own thread: `POST /v1/traces` with a
/// protobuf `ExportTraceServiceRequest`. Returns its base URL.
fn otlp_receiver(spans: &'static std::sync::Mutex<Vec<Span>>) -> String {
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use prost::Message as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
                    let mut got = spans.lock().unwrap_or_else(|e| e.into_inner());
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            for s in scope.spans {
                                let attributes =
                                    s.attributes.iter().map(|kv| (kv.key.clone(), format!("{:?}", kv.value))).collect();
                                got.push(Span {
                                    name: s.name,
                                    trace_id: s.trace_id,
                                    span_id: s.span_id,
                                    parent_span_id: s.parent_span_id,
                                    attributes,
                                });
                            }
                        }
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }),
            );
            axum::serve(listener, app).await.expect("receiver");
        });
    });
    base
}

#[derive(Clone, Copy)]
struct Capture(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        *self
    }
}

/// The JSON log lines whose request span carries `id`.
fn lines_of(id: &str) -> Vec<Value> {
    let logs = captured_logs().lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&logs)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}")))
        .filter(|v| {
            // The request's span is the first of the line's span list (the
            // innermost one, `span`, may be a child: queue, run, ...).
            v["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["request_id"] == json!(id)))
        })
        .collect()
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_an_access_line() {
    telemetry();
    let server = Server::default().await;
    let send = |id: Option<&'static str>, script: &'static str| {
        let (client, url) = (server.client.clone(), format!("{}/api/v1/execute", server.base));
        async move {
            let mut request = client.post(url).json(&json!({"script": script}));
            if let Some(id) = id {
                request = request.header("x-request-id", id);
            }
            let resp = request.send().await.expect("request");
            let echoed = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            (resp.status().as_u16(), echoed)
        }
    };
    // The client's id is kept and echoed.
    let (status, echoed) = send(Some("ops-test-7f3a"), "addVar(a, 1)\naddResult(a)").await;
    assert_eq!((status, echoed.as_deref()), (200, Some("ops-test-7f3a")));
    // None given (or an unusable one): a new UUID.
    let (_, generated) = send(None, "addVar(a, 1)").await;
    let generated = generated.expect("an id");
    assert_eq!(generated.len(), 36, "{generated}");
    let (_, replaced) = send(Some("bad id with spaces"), "addVar(a, 1)").await;
    assert_ne!(replaced.as_deref(), Some("bad id with spaces"));
    let (status, _) = send(Some("ops-test-syntax"), "addVar(a, 1").await;
    assert_eq!(status, 400);

    let deadline = Instant::now() + Duration::from_secs(5);
    let access = |id: &str| lines_of(id).into_iter().find(|l| l["target"] == json!("avap::access"));
    while access("ops-test-syntax").is_none() {
        assert!(Instant::now() < deadline, "no access line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = access("ops-test-7f3a").expect("the access line");
    assert_eq!(ok["level"], json!("INFO"));
    let fields = &ok["fields"];
    assert_eq!((fields["status"].as_u64(), fields["kind"].as_str()), (Some(200), Some("ok")), "{ok}");
    assert!(fields["fuel"].as_u64().is_some_and(|f| f > 0), "{ok}");
    assert_eq!(fields["guest_version"], json!(avap_guest_vm::GUEST_VERSION));
    assert!(fields["duration_ms"].as_f64().is_some(), "{ok}");
    assert_eq!(ok["span"]["path"], json!("/api/v1/execute"));
    let bad = access("ops-test-syntax").expect("the access line");
    assert_eq!((bad["fields"]["status"].as_u64(), bad["fields"]["kind"].as_str()), (Some(400), Some("syntax_error")));
    assert!(access(&generated).is_some(), "a generated id is logged too");
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_from_request_to_capability_call() {
    let telemetry = telemetry();
    let server = Server::default().await;
    let resp = server
        .client
        .post(format!("{}/api/v1/execute", server.base))
        .header("x-request-id", "ops-otlp-1")
        .json(&json!({"script": "ormDirect(\"SELECT 41 + 1 AS answer\", rows)\naddResult(rows)"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(20);
    let request = loop {
        telemetry.handle.flush();
        let spans = telemetry.spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let found = spans
            .iter()
            .find(|s| {
                s.name == "request" && s.attributes.iter().any(|(k, v)| k == "request_id" && v.contains("ops-otlp-1"))
            })
            .cloned();
        if let Some(request) = found {
            let of_trace: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == request.trace_id).collect();
            if of_trace.iter().any(|s| s.name == "capability") {
                break (request, of_trace);
            }
        }
        assert!(Instant::now() < deadline, "the request's spans never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (request, trace) = request;
    let child = |name: &str, parent: &Span| {
        trace
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .cloned()
            .unwrap_or_else(|| panic!("no `{name}` span under `{}`: {trace:?}", parent.name))
    };
    child("queue", &request);
    child("instantiate", &request);
    let run = child("run", &request);
    let capability = child("capability", &run);
    assert!(capability.attributes.iter().any(|(k, v)| k == "capability" && v.contains("db")), "{capability:?}");
}

/// Every metric keeps to the Prometheus naming rules: `avap_` and
/// snake_case, counters `_total`, histograms with a unit, info metrics 1.
#[tokio::test]
async fn metric_names_follow_the_prometheus_rules() {
    let server = Server::default().await;
    let (status, _) = server.run("ormDirect(\"SELECT 1 AS one\", r)\naddResult(r)").await;
    assert_eq!(status, 200);
    let (_, text) = server.get_text("/metrics").await;
    let mut families = std::collections::BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("# TYPE name kind");
        families.insert(name.to_string(), kind.to_string());
    }
    for (name, kind) in &families {
        let snake = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        assert!(name.starts_with("avap_") && snake, "{name}: avap_ and snake_case");
        match kind.as_str() {
            "counter" => assert!(text.contains(&format!("\n{name}_total")), "{name}: counters are sampled as _total"),
            "histogram" => assert!(name.ends_with("_seconds") || name.ends_with("_bytes"), "{name}: a unit"),
            "gauge" => assert!(!name.ends_with("_total"), "{name}: a gauge is not a _total"),
            other => panic!("{name}: unexpected type {other}"),
        }
        if name.ends_with("_info") {
            assert_eq!(kind, "gauge", "{name}");
        }
    }
    for want in [
        "avap_guest_info",
        "avap_catalog_info",
        "avap_brain_up",
        "avap_queue_wait_seconds",
        "avap_capability_duration_seconds",
        "avap_catalog_refusals",
        "avap_active_executions",
    ] {
        assert!(families.contains_key(want), "{want} missing: {families:?}");
    }
    assert!(text.contains("avap_catalog_info{version_hash=\"\",source=\"built-in\"} 1"), "{text}");
    assert!(text.contains("avap_capability_duration_seconds_count{capability=\"db\"} 1"), "{text}");
    assert!(text.contains("avap_queue_wait_seconds_count 1"), "{text}");
}

/// The JSON log lines written since `from` bytes into the capture.
fn lines_since(from: usize) -> Vec<Value> {
    let logs = captured_logs().lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(logs.get(from..).unwrap_or_default())
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// `avap_host::run` as the binary runs it, from command-line flags (and no
/// environment variable that names a brain). Returns its base URL, the
/// log lines it wrote until it listened, and the handle that stops it.
async fn run_binary_like(args: &[&str]) -> (String, Vec<Value>, tokio::sync::oneshot::Sender<()>) {
    use clap::Parser as _;
    let from = captured_logs().lock().unwrap_or_else(|e| e.into_inner()).len();
    let mut argv = vec!["avap-host"];
    argv.extend_from_slice(args);
    let config = avap_host::Config::try_parse_from(argv).expect("the flags parse");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(avap_host::run(config, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = lines_since(from);
        let listening = lines
            .iter()
            .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("avap-host listening")));
        if let Some(line) = listening {
            let local = line["fields"]["local"].as_str().expect("the address it listens on").to_string();
            return (format!("http://{local}"), lines, stop);
        }
        assert!(Instant::now() < deadline, "the host never listened: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The README's first command (`--dev --bind 127.0.0.1`) follows no
/// definition server: it is ready at once, contacts nothing, and its
/// start-up line tells a user how to call it, token included when one is
/// needed (the token itself is never logged).
#[tokio::test]
async fn the_readme_first_command_is_standalone_and_ready() {
    telemetry();
    if std::env::var_os("BRAIN_HOST").is_some() {
        panic!("BRAIN_HOST is set in the test environment: unset it");
    }
    let (base, lines, stop) = run_binary_like(&["--dev", "--bind", "127.0.0.1", "--port", "0"]).await;
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200, "{}", ready.text().await.unwrap_or_default());
    let health: Value = client.get(format!("{base}/health")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["brain"]["mode"], json!("standalone"), "{health}");
    assert_eq!(health["brain"]["address"], Value::Null, "{health}");
    let text = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n");
    assert!(!text.contains("avap-definition-engine"), "a brain name appears in the start-up log: {text}");
    assert!(text.contains("no definition server is contacted"), "{text}");
    let curl = lines
        .iter()
        .find_map(|l| l["fields"]["message"].as_str().filter(|m| m.starts_with("avap-host listening")))
        .expect("the listening line");
    assert!(curl.contains("curl -s http://") && !curl.contains("Authorization"), "{curl}");
    let _ = stop.send(());

    let (base, lines, stop) =
        run_binary_like(&["--dev", "--bind", "127.0.0.1", "--port", "0", "--api-tokens", "s3cret-token-7"]).await;
    let curl = lines
        .iter()
        .find_map(|l| l["fields"]["message"].as_str().filter(|m| m.starts_with("avap-host listening")))
        .expect("the listening line")
        .to_string();
    assert!(curl.contains("-H 'Authorization: Bearer <one of AVAP_API_TOKENS>'"), "{curl}");
    let all = lines.iter().map(|l| l.to_string()).collect::<String>();
    assert!(!all.contains("s3cret-token-7"), "the token was logged");
    // The line's command works as printed, with the token in place.
    let resp = client
        .post(format!("{base}/api/v1/execute"))
        .bearer_auth("s3cret-token-7")
        .json(&json!({"script": "addVar(a, 1)\naddResult(a)"}))
        .send()
        .await
        .expect("execute");
    assert_eq!(resp.status().as_u16(), 200);
    let _ = stop.send(());
}

/// A host whose every catalog is refused says so on `/readyz`, and why,
/// instead of "no catalog yet".
#[tokio::test]
async fn readyz_says_when_the_catalogs_are_refused() {
    let brain = BrainProc::start(brain_config(None)).await;
    // Not the brain's key: every entry and manifest fails verification.
    let (server, _) = host_for(brain.port, |c| c.internal_key = "a different secret of at least 32 bytes".into()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = probe(&server, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        if body["reason"].as_str().is_some_and(|r| r.contains("refused")) {
            break body;
        }
        assert!(Instant::now() < deadline, "never said refused: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("every catalog the definition server sent was refused: "), "{body}");
    assert!(!reason.contains("no catalog from the definition server yet"), "{body}");
    // Without the token, the reason is kept short.
    let (guarded, _) = host_for(brain.port, |c| {
        c.internal_key = "a different secret of at least 32 bytes".into();
        c.api_tokens = vec!["tok".to_string()].into();
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = probe(&guarded, "/readyz").await;
        let reason = body["reason"].as_str().unwrap_or_default().to_string();
        if reason.contains("refused") {
            assert_eq!(
                reason,
                "every catalog the definition server sent was refused (the reason is in /health, with a token)"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never said refused: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A host keeps its compiled guest and prepared snapshot on disk and a
/// restart reads them instead of compiling; an artifact altered on disk, or
/// one made under another host's key, is refused and compiled again.
#[tokio::test]
async fn a_restart_reads_its_own_compiled_guests_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("artifacts");
    let artifacts = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")))
            .into_iter()
            .flatten()
            .collect()
    };
    // (guest read from an artifact, snapshot read from an artifact), once
    // the host keeps both.
    let start = || {
        let cache = cache.clone();
        async move {
            let state =
                avap_host::AppState::new(&config(|c| c.cache_dir = cache.display().to_string())).await.expect("state");
            let server = Server::with_state(state).await;
            let (_, text) = server.get_text("/health").await;
            let health: Value = serde_json::from_str(&text).expect("json");
            server.assert_healthy().await;
            let guest = &health["guest"];
            (guest["from_artifact"] == json!(true), guest["snapshot"]["from_artifact"] == json!(true))
        }
    };
    assert_eq!(start().await, (false, false), "the first start compiles");
    assert_eq!(artifacts().len(), 2, "the guest and its prepared snapshot");
    assert_eq!(start().await, (true, true), "a restart reads both");
    // One byte of each altered: both refused, compiled again; still serving.
    for path in artifacts() {
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).expect("write");
    }
    assert_eq!(start().await, (false, false), "altered artifacts are not read");
    assert_eq!(start().await, (true, true), "the recompiled ones were kept");
    // Under another host's key nothing is read.
    std::fs::write(cache.join("host.key"), [7u8; 32]).expect("another key");
    assert_eq!(start().await, (false, false), "artifacts under another key are not read");
}
