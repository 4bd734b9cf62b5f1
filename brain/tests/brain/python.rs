//! The Python the brain serves to the original servers, run with `python3`
//! the way an original server runs it (`exec` in a namespace with `task`,
//! `self.conector.variables` and the `requests` module), against HTTP
//! stand-ins on 127.0.0.1 that count what reaches them: where
//! `RequestGet`/`RequestPost` may go, what a redirect may do, how much they
//! take back and for how long, and how long `getRegex`/`replace` may
//! backtrack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Runs one command's payload as an original server would, and prints
/// `{"variables": ...}` or `{"error": ...}`. `thread` runs it off the main
/// thread (the server's thread pool).
const RUNNER: &str = r#"
import json, os, re, sys, threading, uuid
import requests
payload = open(sys.argv[1], encoding='utf-8').read()
props = json.load(open(sys.argv[2], encoding='utf-8'))

class Conector:
    def __init__(self):
        self.variables = {}

class Bridge:
    def __init__(self):
        self.conector = Conector()
    def process_step(self, node):
        raise RuntimeError('no steps here')

bridge = Bridge()
ns = {'task': {'properties': props, 'context': None, 'branches': {}, 'sequence': []}, 'self': bridge,
      'requests': requests, 'json': json, 're': re, 'uuid': uuid, 'os': os}
code = compile(payload, '<cmd>', 'exec')
out = {}
def run():
    try:
        exec(code, ns)
        out['variables'] = bridge.conector.variables
    except Exception as e:
        out['error'] = str(e)
if len(sys.argv) > 3 and sys.argv[3] == 'thread':
    t = threading.Thread(target=run)
    t.start()
    t.join()
else:
    run()
print(json.dumps(out, default=str))
"#;

struct Python {
    dir: tempfile::TempDir,
}

impl Python {
    fn new() -> Python {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("runner.py"), RUNNER).expect("write");
        for (name, source) in avap_brain::python::STANDARD {
            std::fs::write(dir.path().join(format!("{name}.py")), source).expect("write");
        }
        Python { dir }
    }

    /// Runs `command` with positional arguments `args` and the environment
    /// `env`, within `limit` (the process is killed after it: a hang fails
    /// the test, it does not stall it).
    async fn run(&self, command: &str, args: &[&str], env: &[(&str, String)], thread: bool, limit: Duration) -> Value {
        let props: serde_json::Map<String, Value> =
            args.iter().enumerate().map(|(i, a)| (i.to_string(), json!(a))).collect();
        // A file, not an argument: arguments are capped at 128 KiB each.
        let props_file = tempfile::NamedTempFile::new_in(self.dir.path()).expect("temp file");
        std::fs::write(props_file.path(), Value::Object(props).to_string()).expect("write");
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(self.dir.path().join("runner.py"))
            .arg(self.dir.path().join(format!("{command}.py")))
            .arg(props_file.path())
            .arg(if thread { "thread" } else { "main" })
            .env_remove("AVAP_HTTP_ALLOW")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{command} {args:?} ran past {limit:?}"))
            .expect("python3 runs (CI installs it, with requests)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{command}: {e}: {stdout}"))
    }
}

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("expected an error: {v}"))
}

/// An HTTP/1.1 stand-in: answers each request by its path, counts requests,
/// keeps the last request head it saw.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    last_head: Arc<std::sync::Mutex<String>>,
}

/// What the stand-in answers for a path.
fn reply_for(path: &str) -> Option<Vec<u8>> {
    let response = |status: &str, extra: &str, body: &[u8]| {
        let mut r = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())
            .into_bytes();
        r.extend_from_slice(body);
        r
    };
    if path.starts_with("/json") {
        return Some(response("200 OK", "Content-Type: application/json\r\n", br#"{"ok":true}"#));
    }
    if let Some(to) = path.strip_prefix("/redirect?to=") {
        return Some(response("302 Found", &format!("Location: {to}\r\n"), b""));
    }
    if path.starts_with("/big") {
        return Some(response("200 OK", "", &vec![b'x'; 64 * 1024]));
    }
    if path.starts_with("/silent") {
        return None;
    }
    Some(response("404 Not Found", "", b"nope"))
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up =
            Upstream { addr: listener.local_addr().expect("addr"), hits: Arc::default(), last_head: Arc::default() };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let me = me.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    me.hits.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    *me.last_head.lock().expect("lock") = head;
                    match reply_for(&path) {
                        Some(reply) => {
                            let _ = stream.write_all(&reply).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        up
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn allow(&self) -> String {
        self.addr.to_string()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

const LIMIT: Duration = Duration::from_secs(30);

/// Loopback, private and metadata addresses, however they are written, are
/// refused before any connection; the allow-list opens exact destinations.
#[tokio::test]
async fn requests_reach_public_addresses_only_unless_allow_listed() {
    let py = Python::new();
    let up = Upstream::start().await;
    let port = up.addr.port();
    for url in [
        up.url("/json"),
        format!("http://localhost:{port}/json"),
        format!("http://[::ffff:127.0.0.1]:{port}/json"),
        format!("http://2130706433:{port}/json"),
        format!("http://0x7f.1:{port}/json"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://10.0.0.1/".into(),
        "http://[fd00::1]/".into(),
        "http://0.0.0.0/".into(),
    ] {
        let out = py.run("RequestGet", &[&url, "", "", "r"], &[], false, LIMIT).await;
        assert!(error(&out).contains("destination refused"), "{url}: {out}");
    }
    for url in ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/"] {
        let out = py.run("RequestGet", &[url, "", "", "r"], &[], false, LIMIT).await;
        assert!(error(&out).contains("only http and https"), "{url}: {out}");
    }
    let out = py.run("RequestPost", &[&up.url("/json"), "", "", "{}", "r"], &[], false, LIMIT).await;
    assert!(error(&out).contains("a loopback address"), "{out}");
    assert_eq!(up.hits(), 0, "nothing reached the stand-in");

    let allow = [("AVAP_HTTP_ALLOW", up.allow())];
    let out = py.run("RequestGet", &[&up.url("/json"), "", "", "r"], &allow, false, LIMIT).await;
    assert_eq!(out["variables"]["r"], json!({"ok": true}), "{out}");
    let out = py.run("RequestPost", &[&up.url("/json"), "", "", r#"{"a": 1}"#, "r"], &allow, false, LIMIT).await;
    assert_eq!(out["variables"]["r"], json!({"ok": true}), "{out}");
    assert_eq!(up.hits(), 2);
    // The allow-list is exact: another port of the same address is not on it.
    let other = Upstream::start().await;
    let out = py.run("RequestGet", &[&other.url("/json"), "", "", "r"], &allow, false, LIMIT).await;
    assert!(error(&out).contains("destination refused"), "{out}");
    assert_eq!(other.hits(), 0);
}

/// A redirect is a new destination, checked like the first; credentials do
/// not follow it to another origin.
#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    let py = Python::new();
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let to_second = first.url(&format!("/redirect?to={}", second.url("/json")));
    let only_first = [("AVAP_HTTP_ALLOW", first.allow())];
    let out = py.run("RequestGet", &[&to_second, "", "", "r"], &only_first, false, LIMIT).await;
    assert!(error(&out).contains("destination refused"), "{out}");
    assert_eq!((first.hits(), second.hits()), (1, 0), "the redirect's target was never contacted");

    let to_metadata = first.url("/redirect?to=http://169.254.169.254/latest/meta-data/");
    let out = py.run("RequestGet", &[&to_metadata, "", "", "r"], &only_first, false, LIMIT).await;
    assert!(error(&out).contains("the cloud metadata address"), "{out}");

    let both = [("AVAP_HTTP_ALLOW", format!("{},{}", first.allow(), second.allow()))];
    let headers = r#"{"Authorization": "Bearer s3cret", "X-Kept": "yes"}"#;
    let out = py.run("RequestGet", &[&to_second, "", headers, "r"], &both, false, LIMIT).await;
    assert_eq!(out["variables"]["r"], json!({"ok": true}), "{out}");
    let seen = second.last_head.lock().expect("lock").to_lowercase();
    assert!(seen.contains("x-kept: yes") && !seen.contains("authorization"), "{seen}");
    assert!(seen.contains(&format!("host: {}", second.addr)), "{seen}");

    // More than five redirects: refused.
    let mut url = first.url("/json");
    for _ in 0..6 {
        url = first.url(&format!("/redirect?to={url}"));
    }
    let out = py.run("RequestGet", &[&url, "", "", "r"], &both, false, LIMIT).await;
    assert!(error(&out).contains("too many redirects"), "{out}");
}

#[tokio::test]
async fn responses_are_capped_in_size_and_time() {
    let py = Python::new();
    let up = Upstream::start().await;
    let env = [("AVAP_HTTP_ALLOW", up.allow()), ("AVAP_HTTP_MAX_RESPONSE_BYTES", "1000".into())];
    let out = py.run("RequestGet", &[&up.url("/big"), "", "", "r"], &env, false, LIMIT).await;
    assert!(error(&out).contains("over 1000 bytes"), "{out}");

    let env = [("AVAP_HTTP_ALLOW", up.allow()), ("AVAP_HTTP_TIMEOUT_MS", "500".into())];
    let started = Instant::now();
    let out = py.run("RequestGet", &[&up.url("/silent"), "", "", "r"], &env, false, LIMIT).await;
    let took = started.elapsed();
    assert!(error(&out).contains("timed out") || error(&out).contains("Read timed out"), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// https to an allow-listed name is connected to the address checked and
/// still verified for the name (SNI and certificate).
#[tokio::test]
async fn https_is_verified_for_the_name_though_the_address_is_pinned() {
    let py = Python::new();
    let (ca, cert, key) = super::certificates(&["localhost"]);
    let tls = avap_brain::net::Tls::from_pem(cert.as_bytes(), key.as_bytes(), None).expect("tls identity");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = names.clone();
    tokio::spawn(async move {
        // The identity offers only h2; these clients speak HTTP/1.1 without ALPN.
        let mut config = tokio_rustls::rustls::ServerConfig::clone(tls.acceptor.config());
        config.alpn_protocols.clear();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                seen.lock().expect("lock").push(tls.get_ref().1.server_name().map(str::to_string));
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = br#"{"tls":true}"#;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca).expect("write");
    let bundle = bundle.display().to_string();
    let env = [("AVAP_HTTP_ALLOW", format!("localhost:{port}")), ("REQUESTS_CA_BUNDLE", bundle.clone())];
    let url = format!("https://localhost:{port}/");
    let out = py.run("RequestGet", &[&url, "", "", "r"], &env, false, LIMIT).await;
    assert_eq!(out["variables"]["r"], json!({"tls": true}), "{out}");
    assert!(names.lock().expect("lock").contains(&Some("localhost".into())), "SNI carries the name");
    // The address itself is not the certificate's name: refused.
    let env = [("AVAP_HTTP_ALLOW", format!("127.0.0.1:{port}")), ("REQUESTS_CA_BUNDLE", bundle)];
    let out = py.run("RequestGet", &[&format!("https://127.0.0.1:{port}/"), "", "", "r"], &env, false, LIMIT).await;
    assert!(error(&out).contains("failed"), "{out}");
}

/// The Python's address rules are the host's (`avap_policy::net::refusal`),
/// address by address.
#[tokio::test]
async fn the_address_rules_are_the_hosts() {
    let addresses = [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.32.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",
        "100.128.0.1",
        "192.0.0.8",
        "192.0.2.7",
        "198.18.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "8.8.8.8",
        "1.1.1.1",
        "::1",
        "::",
        "fe80::1",
        "fec0::1",
        "fd00::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:8.8.8.8",
        "64:ff9b::a00:1",
        "::10.0.0.1",
        "100::1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82a::200e",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let net = avap_brain::python::source("RequestGet").expect("payload");
    let (net, _) = net.split_once("CMD = 'RequestGet'").expect("the command's own part");
    let script = format!(
        "import json, sys\nimport requests\n{net}\nimport ipaddress\nprint(json.dumps([ip_refusal(ipaddress.ip_address(a)) for a in sys.argv[1:]]))\n"
    );
    let path = dir.path().join("rules.py");
    std::fs::write(&path, script).expect("write");
    let out = tokio::process::Command::new("python3").arg(&path).args(addresses).output().await.expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python: Vec<Option<String>> = serde_json::from_slice(&out.stdout).expect("json");
    for (addr, py) in addresses.iter().zip(python) {
        let rust = avap_policy::net::refusal(addr.parse().expect("address")).map(str::to_string);
        assert_eq!(py, rust, "{addr}");
    }
}

/// A backtracking pattern is cut off at the deadline, on the main thread
/// (a timer) and off it (a child process); the text is capped.
#[tokio::test]
async fn backtracking_patterns_stop_at_the_deadline() {
    let py = Python::new();
    let env = [("AVAP_REGEX_TIMEOUT_MS", "300".to_string())];
    let evil = format!("{}!", "a".repeat(40));
    for thread in [false, true] {
        for (command, args) in
            [("getRegex", vec![evil.as_str(), "(a+)+$", "r"]), ("replace", vec![evil.as_str(), "(a|aa)+$", "x", "r"])]
        {
            let started = Instant::now();
            let out = py.run(command, &args, &env, thread, LIMIT).await;
            let took = started.elapsed();
            assert!(error(&out).contains("took longer than 300 ms"), "{command} thread={thread}: {out}");
            assert!(took < Duration::from_secs(5), "{command} thread={thread}: {took:?}");
        }
        // Patterns that finish still answer.
        let out = py.run("getRegex", &["order 12, item 345", "[0-9]+", "r"], &env, thread, LIMIT).await;
        assert_eq!(out["variables"]["r"], json!("12345"), "{out}");
        let out = py.run("replace", &["a1b22", "[0-9]+", "#", "r"], &env, thread, LIMIT).await;
        assert_eq!(out["variables"]["r"], json!("a#b#"), "{out}");
    }
    let huge = "a".repeat((1 << 20) + 1);
    let out = py.run("getRegex", &[&huge, "b", "r"], &env, false, LIMIT).await;
    assert!(error(&out).contains("longer than 1048576 bytes"), "{out}");
}
