//! The brain's two ports under connections that never get anywhere: the
//! ops port (HTTP/1, no auth) and the gRPC port (plaintext and TLS). Each
//! connection must send its headers, or finish its TLS handshake and
//! HTTP/2 preface, within the header timeout; beyond the connection cap a
//! connection waits in the kernel's queue; and with the descriptor table
//! full the accept loop sleeps instead of spinning (the real binary, under
//! `prlimit`, its CPU time read from /proc).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use avap_brain::{Brain, BrainConfig, TlsConfig};
use avap_wire::pb::{DefinitionEngineClient, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::authed;

/// Waits until the peer closes `stream`; the time it took, or `None` if it
/// stayed open for `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(started + within), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A brain serving gRPC and its ops port in-process.
struct Ports {
    brain: Brain,
    grpc: SocketAddr,
    ops: SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Ports {
    async fn start(config: BrainConfig) -> Ports {
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (grpc_addr, ops_addr) = (grpc.local_addr().expect("addr"), ops.local_addr().expect("addr"));
        let brain = Brain::new(config).expect("brain");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut a = stopped.clone();
        tokio::spawn(brain.clone().serve(grpc, async move {
            let _ = a.wait_for(|s| *s).await;
        }));
        let mut b = stopped;
        tokio::spawn(brain.clone().serve_http(ops, async move {
            let _ = b.wait_for(|s| *s).await;
        }));
        Ports { brain, grpc: grpc_addr, ops: ops_addr, _stop: stop }
    }
}

fn timeouts(ms: u64) -> BrainConfig {
    BrainConfig { header_timeout: Duration::from_millis(ms), ..BrainConfig::dev() }
}

#[tokio::test]
async fn the_ops_port_closes_half_sent_and_silent_connections() {
    let ports = Ports::start(timeouts(300)).await;
    let started = Instant::now();
    let mut half = TcpStream::connect(ports.ops).await.expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: brain\r\n").await.expect("write");
    let mut silent = TcpStream::connect(ports.ops).await.expect("connect");
    for (what, stream) in [("half-sent", &mut half), ("silent", &mut silent)] {
        closed_after(stream, Duration::from_secs(5)).await.unwrap_or_else(|| panic!("{what}: kept open"));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "{what}: {took:?}");
    }
    // A whole request is answered.
    let mut whole = TcpStream::connect(ports.ops).await.expect("connect");
    whole.write_all(b"GET /livez HTTP/1.1\r\nHost: brain\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut reply = String::new();
    whole.read_to_string(&mut reply).await.expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn the_grpc_port_closes_connections_that_never_handshake() {
    let ports = Ports::start(timeouts(300)).await;
    let mut silent = TcpStream::connect(ports.grpc).await.expect("connect");
    let mut half = TcpStream::connect(ports.grpc).await.expect("connect");
    half.write_all(&avap_brain::net::H2_PREFACE[..10]).await.expect("write");
    let mut http1 = TcpStream::connect(ports.grpc).await.expect("connect");
    http1.write_all(b"GET / HTTP/1.1\r\nHost: brain\r\nX-Padding: 0123456789\r\n\r\n").await.expect("write");
    for (what, stream) in [("silent", &mut silent), ("half a preface", &mut half), ("HTTP/1", &mut http1)] {
        let took = closed_after(stream, Duration::from_secs(5)).await.unwrap_or_else(|| panic!("{what}: kept open"));
        assert!(took < Duration::from_secs(3), "{what}: {took:?}");
    }
    // A real client is served, and stays connected past the timeout (its
    // HTTP/2 connection is established).
    let channel =
        Endpoint::from_shared(format!("http://{}", ports.grpc)).expect("endpoint").connect().await.expect("c");
    let mut client = DefinitionEngineClient::new(channel);
    assert!(!client.sync_catalog(authed(Empty {})).await.expect("sync").into_inner().commands.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(client.sync_catalog(authed(Empty {})).await.is_ok(), "an idle HTTP/2 connection is not a stalled one");
    let metrics = ports.brain.metrics().encode();
    assert!(metrics.contains("avap_brain_grpc_connections_refused_total{reason=\"handshake_timeout\"} 2"), "{metrics}");
    assert!(metrics.contains("avap_brain_grpc_connections_refused_total{reason=\"not_http2\"} 1"), "{metrics}");
    assert!(metrics.contains("avap_brain_grpc_connections 1"), "{metrics}");
}

#[tokio::test]
async fn the_tls_port_closes_connections_before_their_client_hello() {
    let (ca, cert, key) = super::certificates(&["localhost", "127.0.0.1"]);
    let tls = TlsConfig { cert_pem: cert.into_bytes(), key_pem: key.into_bytes(), client_ca_pem: None };
    let ports = Ports::start(BrainConfig { tls: Some(tls), ..timeouts(300) }).await;
    let mut silent = TcpStream::connect(ports.grpc).await.expect("connect");
    let took = closed_after(&mut silent, Duration::from_secs(5)).await.expect("a silent connection is closed");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Half a ClientHello is no better.
    let mut half = TcpStream::connect(ports.grpc).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).await.expect("write");
    assert!(closed_after(&mut half, Duration::from_secs(5)).await.is_some(), "a half-sent ClientHello is closed");
    // Plaintext HTTP/2 on the TLS port: a failed handshake.
    let mut plain = TcpStream::connect(ports.grpc).await.expect("connect");
    plain.write_all(avap_brain::net::H2_PREFACE).await.expect("write");
    assert!(closed_after(&mut plain, Duration::from_secs(5)).await.is_some());
    // A TLS client is served.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", ports.grpc))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect over TLS");
    let catalog = DefinitionEngineClient::new(channel).sync_catalog(authed(Empty {})).await.expect("sync");
    assert!(!catalog.into_inner().commands.is_empty());
    let metrics = ports.brain.metrics().encode();
    assert!(metrics.contains("avap_brain_grpc_connections_refused_total{reason=\"handshake_timeout\"} 2"), "{metrics}");
    assert!(metrics.contains("avap_brain_grpc_connections_refused_total{reason=\"tls\"} 1"), "{metrics}");
}

#[tokio::test]
async fn beyond_the_connection_cap_a_client_waits_for_a_free_slot() {
    let config = BrainConfig { max_connections: 2, header_timeout: Duration::from_secs(30), ..BrainConfig::dev() };
    let ports = Ports::start(config).await;
    let held = vec![
        TcpStream::connect(ports.grpc).await.expect("connect"),
        TcpStream::connect(ports.grpc).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let endpoint = Endpoint::from_shared(format!("http://{}", ports.grpc)).expect("endpoint");
    let attempt = tokio::time::timeout(Duration::from_millis(800), async {
        let channel = endpoint.connect().await?;
        let mut client = DefinitionEngineClient::new(channel);
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(client.sync_catalog(authed(Empty {})).await?)
    })
    .await;
    assert!(attempt.is_err(), "a client over the cap was served");
    drop(held);
    let channel = tokio::time::timeout(Duration::from_secs(5), endpoint.connect())
        .await
        .expect("served once a slot is free")
        .expect("connect");
    let mut client = DefinitionEngineClient::new(channel);
    assert!(client.sync_catalog(authed(Empty {})).await.is_ok());
}

/// The `avap-brain` binary with `args`, its stdout a JSON log.
struct Process {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Process {
    fn spawn(prefix: &[&str], args: &[&str]) -> Process {
        let bin = env!("CARGO_BIN_EXE_avap-brain");
        let (program, rest) = match prefix.split_first() {
            Some((p, rest)) => (*p, [rest, &[bin]].concat()),
            None => (bin, Vec::new()),
        };
        let mut child = Command::new(program)
            .args(rest)
            .args(["--log-format", "json", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("avap-brain starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Process { child, lines }
    }

    /// The first log line whose message is `message`.
    fn line(&self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no log line {message:?}"));
            if line["fields"]["message"] == message {
                return line;
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        self.line("avap-brain listening")["fields"]["addr"].as_str().expect("addr").parse().expect("an address")
    }

    /// User and system CPU time so far, from /proc.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("/proc stat");
        let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime), counted after the command name.
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        let per_second: u64 =
            String::from_utf8_lossy(&Command::new("getconf").arg("CLK_TCK").output().expect("getconf").stdout)
                .trim()
                .parse()
                .expect("CLK_TCK");
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With the descriptor table full, accepting fails; the brain must wait
/// and retry, not spin. The real binary under `prlimit --nofile=64`, more
/// connections than it has descriptors for: its CPU time over two seconds
/// stays near zero (a spinning accept loop burns a whole core), and once
/// the connections close it serves again.
#[tokio::test]
async fn out_of_descriptors_the_accept_loop_does_not_spin() {
    let brain = Process::spawn(&["prlimit", "--nofile=64:64", "--"], &["--dev", "--http-listen", "off"]);
    let addr = brain.addr();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(addr).await.expect("the kernel's backlog takes it"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = brain.cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = brain.cpu() - before;
    eprintln!("out of descriptors: {used:?} of CPU in 2 s");
    assert!(used < Duration::from_millis(400), "the accept loop spins: {used:?} of CPU in 2 s");
    drop(held);
    let channel = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(c) = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint").connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("accepting again");
    let mut client = DefinitionEngineClient::new(channel);
    assert!(client.sync_catalog(authed(Empty {})).await.is_ok());
}

/// The real binary with its default timeout (10 s): a silent connection to
/// the gRPC port and a half-sent request to the ops port are both closed,
/// not held for as long as the peer likes.
#[tokio::test]
async fn with_the_default_timeout_both_ports_close_stalled_connections() {
    let brain = Process::spawn(&[], &["--dev", "--http-listen", "127.0.0.1:0"]);
    let grpc = brain.addr();
    let ops: SocketAddr = brain.line("ops port (no auth): /livez, /readyz, /metrics")["fields"]["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("an address");
    let mut silent = TcpStream::connect(grpc).await.expect("connect");
    let mut half = TcpStream::connect(ops).await.expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: brain\r\n").await.expect("write");
    let started = Instant::now();
    for (what, stream) in [("gRPC, silent", &mut silent), ("ops, half-sent", &mut half)] {
        closed_after(stream, Duration::from_secs(20)).await.unwrap_or_else(|| panic!("{what}: held for 20 s"));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "{what}: {took:?}");
    }
}

/// The brain says at start that it serves TLS, and for which names: what a
/// host must connect to.
#[test]
fn the_brain_logs_its_certificate_names_at_start() {
    let (_, cert, key) = super::certificates(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("brain.pem"), cert).expect("write");
    std::fs::write(dir.path().join("brain.key"), key).expect("write");
    let (cert, key) = (dir.path().join("brain.pem"), dir.path().join("brain.key"));
    let args = ["--original-servers", "--http-listen", "off", "--tls-cert", path(&cert), "--tls-key", path(&key)];
    let brain = Process::spawn(&[], &args);
    let line = brain
        .line("serving gRPC over TLS; hosts must connect to one of these names (BRAIN_TLS_DOMAIN, else BRAIN_HOST)");
    assert_eq!(line["fields"]["names"], "DNS:localhost, IP:127.0.0.1", "{line}");
    assert_eq!(line["fields"]["client_certificates"], "not asked", "{line}");
    assert!(line["fields"]["not_after"].is_string(), "{line}");
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}
