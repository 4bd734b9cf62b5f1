//! The adversarial suite: what a hostile client or script can try against
//! a real host (real HTTP, wasmtime, PostgreSQL, SQLite, DNS), and what it
//! must get back. See SECURITY.md for the threat model.
//!
//! - [`cases`]: the table of hostile requests, each with the status, kind
//!   and time a secure host must answer with, and `/health` checked after
//!   each.
//! - `memory_*`: what one request can cost the host's heap, measured by a
//!   counting allocator (tests here run one at a time for that reason).
//! - `front_door_*`: slow and idle connections, the connection cap, body
//!   timeouts and budgets, cross-site requests, tokens.
//! - `dns_*`: slow names cost only their own execution.
//! - `ssrf_*`: addresses that are not loopback, on veth pairs in network
//!   namespaces the test creates; "no packet sent" is read off the
//!   interface counter.

mod cases;
#[path = "../common/mod.rs"]
mod common;
mod definition_server;
mod local_servers;
mod netns;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::dns::{Answer, Dns};
use common::fixtures::{PgSchema, Upstream};
use common::{Server, config};

/// Counts the bytes the process has allocated now, and the most it has held
/// since the last [`reset_peak`].
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are plain atomics.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = CURRENT.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a new peak measurement; returns the bytes held now.
fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Tests here run one at a time: the memory tests read a process-wide
/// counter, and the timing tests should not share the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn result(body: &Value) -> &Value {
    &body["result"]
}

/// Prints a figure and keeps it in `target/tmp/security-summary.txt`, which
/// CI prints at the end (a passing test's output is not shown).
fn report(line: String) {
    use std::io::Write as _;
    println!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("security-summary.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// A listener on every address (both families) that counts connections and
/// answers nothing useful.
struct Counter {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn counter_on(listener: tokio::net::TcpListener) -> Counter {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    Counter { port, hits }
}

async fn counter() -> Counter {
    counter_on(tokio::net::TcpListener::bind("[::]:0").await.expect("bind counter")).await
}

/// Posts raw bytes with a content type and headers.
async fn post_raw(
    server: &Server,
    body: Vec<u8>,
    content_type: &str,
    headers: &[(&str, String)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req =
        server.client.post(format!("{}/api/v1/execute", server.base)).header("content-type", content_type).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, resp.text().await.unwrap_or_default(), headers)
        }
        Err(e) => (0, format!("request failed: {e}"), Default::default()),
    }
}

#[tokio::test]
async fn hostile_cases() {
    let _serial = SERIAL.lock().await;
    let upstream = Upstream::start().await;
    let closed = counter().await;
    let dns = Dns::start(vec![
        ("loop.test", Answer { ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], delay: Duration::ZERO }),
        (
            "mixed.test",
            Answer { ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), "::1".parse().expect("ip")], delay: Duration::ZERO },
        ),
    ])
    .await;
    let schema = PgSchema::create().await;
    // Functions an operator made, run with the role's rights: the role is
    // what stops them.
    schema
        .as_owner(
            "CREATE FUNCTION reads_passwd() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$",
        )
        .await;
    schema
        .as_owner("CREATE FUNCTION runs_program() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id'''; END $$")
        .await;
    schema.as_owner("CREATE FUNCTION imports_passwd() RETURNS oid LANGUAGE plpgsql AS $$ BEGIN RETURN lo_import('/etc/passwd'); END $$").await;
    let base = |c: &mut avap_host::Config| {
        c.http_allow = upstream.authority.parse().expect("allow-list");
        c.http_dns_servers = vec![dns.addr].into();
        c.db_statement_timeout_ms = 500;
    };
    let lite = Server::start(config(base)).await;
    let pg = Server::start(config(|c| {
        base(c);
        c.db_url = schema.url();
        c.db_statement_timeout_ms = 1000;
        c.timeout_ms = 5000;
    }))
    .await;
    let all = cases::all();
    assert!(all.len() >= 100, "the suite must hold at least 100 cases, it holds {}", all.len());
    let mut failures = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    let mut slowest = (Duration::ZERO, String::new());
    for case in &all {
        let server = match case.host {
            cases::Host::Lite => &lite,
            cases::Host::Pg => &pg,
        };
        let (body, content_type, headers) = cases::render(case, &upstream.base, closed.port);
        let started = Instant::now();
        let (status, text, _) = post_raw(server, body, content_type, &headers).await;
        let elapsed = started.elapsed();
        if elapsed > slowest.0 {
            slowest = (elapsed, case.name.clone());
        }
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let kind = json["kind"].as_str().unwrap_or("");
        *outcomes.entry(format!("{status} {}", if kind.is_empty() { "-" } else { kind })).or_default() += 1;
        *groups.entry(case.group).or_default() += 1;
        let mut wrong = Vec::new();
        if !case.status.contains(&status) {
            wrong.push(format!("status {status}, expected {:?}", case.status));
        }
        if !case.kinds.is_empty() && !case.kinds.contains(&kind) {
            wrong.push(format!("kind {kind:?}, expected one of {:?}", case.kinds));
        }
        if !text.contains(case.message) {
            wrong.push(format!("the answer does not mention {:?}", case.message));
        }
        if elapsed > case.max {
            wrong.push(format!("took {elapsed:?}, at most {:?}", case.max));
        }
        if !wrong.is_empty() {
            let shown: String = text.chars().take(400).collect();
            failures.push(format!("[{}] {}: {}\n      answer: {shown}", case.group, case.name, wrong.join("; ")));
        }
        // Whatever the case did, the host still answers and still runs scripts.
        let (health, _) = server.get_text("/health").await;
        let (ok, body) = server.run("addVar(a, 1)\naddResult(a)").await;
        if health != 200 || ok != 200 || result(&body) != &json!({"a": 1}) {
            failures
                .push(format!("[{}] {}: the host is not healthy afterwards ({health}, {ok})", case.group, case.name));
        }
    }
    report(format!("security suite: {} cases in {} groups: {groups:?}", all.len(), groups.len()));
    report(format!("outcomes (status kind: count): {outcomes:?}"));
    report(format!("slowest answer: {:?} ({})", slowest.0, slowest.1));
    assert_eq!(closed.hits.load(Ordering::SeqCst), 0, "a refused loopback destination received a connection");
    assert!(!std::path::Path::new("/tmp/avap-security.db").exists(), "an SQLite file was written");
    // The fixture table survived every trick.
    let (status, body) = pg.run("ormDirect(\"SELECT count(*) AS n FROM users\", r)\naddResult(r)").await;
    assert_eq!((status, result(&body)), (200, &json!({"r": [{"n": 3}]})), "{body}");
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases were answered wrongly:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

/// Sixteen bodies of a million array elements at once cost about their
/// size each, not a tree of values each (~30x).
#[tokio::test]
async fn memory_large_bodies_cost_about_their_size() {
    let _serial = SERIAL.lock().await;
    let server = Arc::new(
        Server::start(config(|c| {
            c.max_concurrency = 32;
            c.timeout_ms = 30_000;
        }))
        .await,
    );
    let zeros = vec!["0"; 500_000].join(",");
    let body = format!(r#"{{"script": "addVar(a, 1)\naddResult(a)", "x": [{zeros}]}}"#).into_bytes();
    assert!(body.len() > 990_000 && body.len() <= 1 << 20);
    let baseline = reset_peak();
    let runs: Vec<_> = (0..16)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            tokio::spawn(async move { post_raw(&server, body, "application/json", &[]).await })
        })
        .collect();
    for run in runs {
        let (status, text, _) = run.await.expect("task");
        assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    }
    let grew = peak().saturating_sub(baseline);
    report(format!("16 concurrent 1 MB bodies: the host's heap grew by at most {} MB", grew >> 20));
    // A body, its copy into the guest's input, and the client's copy here.
    assert!(grew < 16 * (5 << 20), "16 bodies of 1 MB took {} MB of the host's heap", grew >> 20);
}

/// A row of four 200 MB values costs the host at most a few reply caps.
#[tokio::test]
async fn memory_a_huge_postgres_row_is_refused_at_its_header() {
    let _serial = SERIAL.lock().await;
    let schema = PgSchema::create().await;
    let server = Server::start(config(|c| {
        c.db_url = schema.url();
        c.timeout_ms = 20_000;
        c.db_statement_timeout_ms = 15_000;
    }))
    .await;
    let baseline = reset_peak();
    let (status, body) = server
        .run("ormDirect(\"SELECT repeat('x', 200000000) AS a, repeat('y', 200000000) AS b, repeat('z', 200000000) AS c, repeat('w', 200000000) AS d\", r)")
        .await;
    let grew = peak().saturating_sub(baseline);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("larger than the reply cap")), "{body}");
    report(format!("a 800 MB row: the host's heap grew by at most {} MB", grew >> 20));
    assert!(grew < 3 * avap_abi::MAX_REPLY_BYTES + (8 << 20), "one row took {} MB of the host's heap", grew >> 20);
    // The pool recovers: the next statement runs.
    let (status, body) = server.run("ormDirect(\"SELECT 1 AS one\", r)\naddResult(r)").await;
    assert_eq!((status, result(&body)), (200, &json!({"r": [{"one": 1}]})), "{body}");
}

/// The guest's output is passed through as text, not parsed into a tree.
#[tokio::test]
async fn memory_a_large_output_is_not_rebuilt() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|_| {})).await;
    let script = "startLoop(i, 1, 90000)\n AddvariableToJSON(str(i), i, d)\nendLoop()\naddResult(d)";
    let body = serde_json::to_vec(&json!({ "script": script })).expect("json");
    let baseline = reset_peak();
    let (status, text, _) = post_raw(&server, body, "application/json", &[]).await;
    let grew = peak().saturating_sub(baseline);
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let out = text.len();
    report(format!(
        "an output of {} KB: the host's heap grew by at most {} KB (the client's copy included)",
        out >> 10,
        grew >> 10
    ));
    // The guest's output copied out, the response written from it, and the
    // client's copy here; a tree of 90,000 entries would be ~10x the text.
    assert!(grew < 5 * out, "the host held {grew} bytes for an output of {out}");
}

#[tokio::test]
async fn front_door_slow_and_idle_connections_are_closed() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|c| c.header_timeout_ms = 500)).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Fifty slowloris connections: half a request line, then nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"POST /api/v1/execute HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        slow.push(s);
    }
    // An idle keep-alive connection after one good request.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 65536];
    let n = idle.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let started = Instant::now();
    for s in slow.iter_mut().chain(std::iter::once(&mut idle)) {
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a connection was still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    server.assert_healthy().await;
}

/// A client that sends requests and never reads the answers holds its
/// connection only as long as the writes can make no progress.
#[tokio::test]
async fn front_door_a_client_that_never_reads_is_dropped() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|c| c.header_timeout_ms = 700)).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let open = || async {
        let (_, metrics) = server.get_text("/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("avap_open_connections ").and_then(|v| v.trim().parse::<i64>().ok()))
            .unwrap_or(-1)
    };
    let before = open().await;
    // A small receive buffer and thousands of pipelined requests: the
    // answers fill both sockets' buffers and the host's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(addr.parse().expect("addr")).await.expect("connect");
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut sent = 0;
    while sent < 20_000 {
        match tokio::time::timeout(Duration::from_millis(200), stream.write_all(request)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    assert!(open().await > before, "the stalled connection is not counted");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(open().await, before, "a connection that never reads was kept ({sent} requests sent)");
    server.assert_healthy().await;
}

#[tokio::test]
async fn front_door_the_connection_cap_queues_and_reaps() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|c| {
        c.max_connections = 8;
        c.header_timeout_ms = 800;
    }))
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A real client past the cap waits in the kernel's queue until the idle
    // sockets are reaped, then is served: late, never refused.
    let started = Instant::now();
    let client = reqwest::Client::new();
    let resp = client.get(format!("{}/health", server.base)).send().await.expect("served after the reap");
    let waited = started.elapsed();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(waited >= Duration::from_millis(400), "served at once past a full cap ({waited:?})");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    drop(idle);
}

#[tokio::test]
async fn front_door_bodies_have_a_deadline_and_a_budget() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|c| {
        c.body_timeout_ms = 600;
        c.max_inflight_body_bytes = 2 << 20;
    }))
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Declares a body, sends `send` bytes of it, stops.
    let stalled = |declared: usize, send: usize| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let head = format!(
                "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("write");
            s.write_all(&vec![b' '; send]).await.expect("write");
            s
        }
    };
    let started = Instant::now();
    let mut one = stalled(100, 10).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), one.read(&mut buf)).await.expect("answered").expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Two uploads that stop just short of their megabyte hold the whole 2 MB
    // budget (it counts the bytes received): a third waits for it, and is
    // served when their deadline frees it.
    let _a = stalled(1 << 20, (1 << 20) - 10).await;
    let _b = stalled(1 << 20, (1 << 20) - 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut padded = br#"{"script": "addVar(a, 1)\naddResult(a)"}"#.to_vec();
    padded.resize(1 << 20, b' ');
    let (status, text, _) = post_raw(&server, padded, "application/json", &[]).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{text}");
    assert!(waited >= Duration::from_millis(350), "a third megabyte did not wait for the budget ({waited:?})");
    server.assert_healthy().await;
}

#[tokio::test]
async fn front_door_browsers_are_kept_to_their_origins() {
    let _serial = SERIAL.lock().await;
    let upstream = Upstream::start().await;
    let server = Server::start(config(|c| {
        c.cors_origins = "https://app.example.com".parse().expect("list");
        c.http_allow = upstream.authority.parse().expect("allow-list");
    }))
    .await;
    // A script with a side effect: a refused request must never run it.
    let script = format!("RequestGet(\"{}/text\", , , r)\naddResult(r)", upstream.base);
    let body = serde_json::to_vec(&json!({ "script": script })).expect("json");
    let (status, text, _) =
        post_raw(&server, body.clone(), "text/plain", &[("origin", "https://evil.example".into())]).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"kind\":\"cross_origin\""), "{text}");
    let (status, _, _) =
        post_raw(&server, body.clone(), "text/plain", &[("sec-fetch-site", "cross-site".into())]).await;
    assert_eq!(status, 403);
    assert_eq!(upstream.hits(), 0, "a refused cross-site request ran its script");
    // The allowed origin works, and may read the answer.
    let (status, text, headers) =
        post_raw(&server, body.clone(), "application/json", &[("origin", "https://app.example.com".into())]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    assert_eq!(upstream.hits(), 1);
    // Preflights: answered for the allowed origin only.
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/api/v1/execute", server.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://app.example.com").await.expect("preflight");
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(ok.headers().get("access-control-allow-methods").and_then(|v| v.to_str().ok()), Some("GET, POST"));
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    // Clients that are not browsers send neither header: curl -d still works.
    let (status, text, _) = post_raw(&server, body, "application/x-www-form-urlencoded", &[]).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn front_door_tokens_guard_execution_and_metrics() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|c| c.api_tokens = "first-token,second-token".parse().expect("list"))).await;
    let body = || serde_json::to_vec(&json!({"script": "addVar(a, 1)\naddResult(a)"})).expect("json");
    let (status, text, headers) = post_raw(&server, body(), "application/json", &[]).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("\"kind\":\"unauthorized\""), "{text}");
    assert_eq!(headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    let (status, _, _) =
        post_raw(&server, body(), "application/json", &[("authorization", "Bearer first-toke".into())]).await;
    assert_eq!(status, 401);
    let (status, text, _) =
        post_raw(&server, body(), "application/json", &[("authorization", "Bearer second-token".into())]).await;
    assert_eq!(status, 200, "{text}");
    // Probes need no token; the details do.
    let (status, brief) = server.get_text("/health").await;
    assert_eq!(status, 200);
    assert!(!brief.contains("capabilities"), "{brief}");
    let (status, _) = server.get_text("/metrics").await;
    assert_eq!(status, 401);
    let detailed = server
        .client
        .get(format!("{}/health", server.base))
        .header("authorization", "Bearer first-token")
        .send()
        .await
        .expect("health")
        .text()
        .await
        .expect("text");
    assert!(detailed.contains("\"tokens_required\":true"), "{detailed}");
}

#[tokio::test]
async fn scripts_answer_with_statuses_from_200_to_599_only() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(config(|_| {})).await;
    for (status, expect) in [("101", 400), ("199", 400), ("600", 400), ("200", 200), ("418", 418), ("599", 599)] {
        let (got, body) = server.run(&format!("_status = {status}\naddResult(_status)")).await;
        assert_eq!(got, expect, "_status = {status}: {body}");
        if expect == 400 {
            assert!(body["error"].as_str().is_some_and(|e| e.contains("from 200 to 599")), "{body}");
        }
    }
}

/// Twenty executions wait on names that take 3 s to resolve; another one's
/// request goes through at once.
#[tokio::test]
async fn dns_slow_names_cost_only_their_own_execution() {
    let _serial = SERIAL.lock().await;
    let upstream = Upstream::start().await;
    let dns = Dns::start(vec![
        ("*.slow.test", Answer { ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], delay: Duration::from_secs(3) }),
        ("fast.test", Answer { ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], delay: Duration::ZERO }),
    ])
    .await;
    let port = upstream.port().to_string();
    let server = Arc::new(
        Server::start(config(|c| {
            c.http_allow = format!("fast.test:{port}").parse().expect("allow-list");
            c.http_dns_servers = vec![dns.addr].into();
            c.http_timeout_ms = 2000;
            c.timeout_ms = 6000;
        }))
        .await,
    );
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .run(&format!(
                        "try()\n RequestGet(\"http://n{i}.slow.test/\", , , r)\nexception(e)\nend()\naddResult(e)"
                    ))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body) =
        server.run(&format!("RequestGet(\"http://fast.test:{port}/text\", , , r)\naddResult(r)")).await;
    let took = started.elapsed();
    assert_eq!((status, result(&body)), (200, &json!({"r": "hello, plain text"})), "{body}");
    assert!(took < Duration::from_secs(1), "a fast name waited {took:?} behind slow ones");
    // Each slow one ends at its own request timeout, a catchable error.
    for run in slow {
        let (status, body) = run.await.expect("task");
        assert_eq!(status, 200, "{body}");
        assert!(result(&body)["e"].as_str().is_some_and(|e| e.contains("timed out")), "{body}");
    }
    assert!(dns.queries() >= 21, "the DNS server saw {} queries", dns.queries());
}

/// Requests in flight are capped for the whole process.
#[tokio::test]
async fn outbound_requests_in_flight_are_capped() {
    let _serial = SERIAL.lock().await;
    let upstream = Upstream::start().await;
    let server = Arc::new(
        Server::start(config(|c| {
            c.http_allow = upstream.authority.parse().expect("allow-list");
            c.http_max_connections = 1;
            c.timeout_ms = 5000;
        }))
        .await,
    );
    let started = Instant::now();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (server, base) = (server.clone(), upstream.base.clone());
            tokio::spawn(
                async move { server.run(&format!("RequestGet(\"{base}/wait/300\", , , r)\naddResult(r)")).await },
            )
        })
        .collect();
    for run in runs {
        let (status, body) = run.await.expect("task");
        assert_eq!((status, result(&body)), (200, &json!({"r": "waited"})), "{body}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "3 x 300 ms through one slot took {:?}",
        started.elapsed()
    );
}

/// SSRF against real addresses that are not loopback. The host runs inside
/// the client namespace; every target is an address of the target
/// namespace with a listener on it.
#[test]
fn ssrf_refused_destinations_get_no_packet() {
    let _serial = SERIAL.blocking_lock();
    let ns = match netns::Namespaces::create() {
        Ok(ns) => ns,
        Err(netns::Refused(why)) if why.contains("Operation not permitted") && std::env::var_os("CI").is_none() => {
            report(format!("ssrf: SKIPPED, this kernel or sandbox refuses network namespaces ({why})"));
            return;
        }
        Err(netns::Refused(why)) => panic!("could not create the test's network namespaces: {why}"),
    };
    let client = ns.client.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || netns::enter(&client))
        .build()
        .expect("runtime");
    let ns = Arc::new(ns);
    let inner = ns.clone();
    // The calling thread runs the test's future: it enters the namespace too.
    std::thread::spawn(move || {
        netns::enter(&inner.client);
        runtime.block_on(ssrf_in_namespaces(inner))
    })
    .join()
    .expect("the SSRF test panicked");
}

async fn ssrf_in_namespaces(ns: Arc<netns::Namespaces>) {
    use netns::{CGNAT, METADATA, PRIVATE_172, PRIVATE_192, TARGET_V4, TARGET_V6, host};
    let v4 = |ip: Ipv4Addr, port: u16| SocketAddr::new(IpAddr::V4(ip), port);
    let refused_addrs = [
        v4(TARGET_V4, 9090),
        v4(METADATA, 80),
        v4(CGNAT, 80),
        v4(PRIVATE_192, 80),
        v4(PRIVATE_172, 80),
        SocketAddr::new(IpAddr::V6(TARGET_V6), 80),
    ];
    let mut all = vec![v4(TARGET_V4, 8080)];
    all.extend(refused_addrs);
    let mut listeners = netns::listeners_in(&ns.target, &all).into_iter();
    // The allow-listed service (the fixtures' routes, /redirect?to= among them).
    let allowed =
        Upstream::serve(tokio::net::TcpListener::from_std(listeners.next().expect("listener")).expect("tokio"));
    let mut counters = Vec::new();
    for (addr, l) in refused_addrs.iter().zip(listeners) {
        counters.push((*addr, counter_on(tokio::net::TcpListener::from_std(l).expect("tokio")).await));
    }
    // The test's DNS server, on the client namespace's loopback.
    let dns = Dns::start(vec![
        ("private.test", Answer { ips: vec![IpAddr::V4(TARGET_V4)], delay: Duration::ZERO }),
        ("meta.test", Answer { ips: vec![IpAddr::V4(METADATA)], delay: Duration::ZERO }),
        ("cgnat.test", Answer { ips: vec![IpAddr::V4(CGNAT)], delay: Duration::ZERO }),
        ("mixed.test", Answer { ips: vec![IpAddr::V4(PRIVATE_192), IpAddr::V4(PRIVATE_172)], delay: Duration::ZERO }),
        ("v6.test", Answer { ips: vec![IpAddr::V6(TARGET_V6)], delay: Duration::ZERO }),
        ("good.test", Answer { ips: vec![IpAddr::V4(TARGET_V4)], delay: Duration::ZERO }),
    ])
    .await;
    let server = Server::start(config(|c| {
        c.http_allow = format!("{TARGET_V4}:8080,good.test:8080").parse().expect("allow-list");
        c.http_dns_servers = vec![dns.addr].into();
        c.timeout_ms = 3000;
        c.http_timeout_ms = 1000;
    }))
    .await;
    let octets = TARGET_V4.octets();
    let decimal = u32::from(TARGET_V4);
    let direct = [
        format!("http://{TARGET_V4}:9090/"),
        format!("http://{decimal}:9090/"),
        format!("http://0x{decimal:08x}:9090/"),
        format!("http://0{:o}.0{:o}.0{:o}.0{:o}:9090/", octets[0], octets[1], octets[2], octets[3]),
        format!("http://[::ffff:{TARGET_V4}]:9090/"),
        format!("http://{METADATA}/latest/meta-data/iam/security-credentials/"),
        format!("http://{}/", u32::from(METADATA)),
        format!("http://[::ffff:{METADATA}]/"),
        format!("http://{CGNAT}/"),
        format!("http://{PRIVATE_192}/"),
        format!("http://{PRIVATE_172}/"),
        format!("http://{}/", host(IpAddr::V6(TARGET_V6))),
        "http://private.test:9090/".to_string(),
        "http://meta.test/".to_string(),
        "http://cgnat.test/".to_string(),
        "http://mixed.test/".to_string(),
        "http://v6.test/".to_string(),
        "http://good.test:9090/".to_string(),
    ];
    let tx_before = ns.client_tx_packets();
    let mut refused = 0;
    for url in &direct {
        for command in ["RequestGet(\"URL\", , , r)", "RequestPost(\"URL\", , , \"x\", r)"] {
            let (status, body) = server.run(&command.replace("URL", url)).await;
            let error = body["error"].as_str().unwrap_or_default();
            assert_eq!(status, 400, "{url}: {body}");
            assert!(error.contains("destination refused"), "{url}: {error}");
            refused += 1;
        }
    }
    let tx_after = ns.client_tx_packets();
    assert_eq!(
        tx_after,
        tx_before,
        "{} packets left the host for {refused} refused destinations",
        tx_after - tx_before
    );
    // The path works: the allow-listed service is reached, by address and by name.
    for url in [format!("http://{TARGET_V4}:8080/text"), "http://good.test:8080/text".to_string()] {
        let (status, body) = server.run(&format!("RequestGet(\"{url}\", , , r)\naddResult(r)")).await;
        assert_eq!((status, result(&body)), (200, &json!({"r": "hello, plain text"})), "{url}: {body}");
    }
    assert!(ns.client_tx_packets() > tx_after, "the allowed requests left no trace on the counter");
    // Redirects from the allowed service to every refused target: the
    // redirect is followed by hand and each hop refused.
    let before = allowed.hits();
    for target in &direct {
        let url = format!("http://{TARGET_V4}:8080/redirect?to={target}");
        let (status, body) = server.run(&format!("RequestGet(\"{url}\", , , r)")).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains("destination refused"), "{target}: {body}");
    }
    assert_eq!(allowed.hits() - before, direct.len(), "each redirect asked the allowed service once");
    for (addr, counter) in &counters {
        assert_eq!(counter.hits.load(Ordering::SeqCst), 0, "{addr} received a connection");
    }
    report(format!(
        "ssrf: {refused} refused requests to {} destinations (+{} redirects), 0 packets sent, 0 connections received",
        direct.len(),
        direct.len()
    ));
    server.assert_healthy().await;
}
