//! `avap-brain`: the AVAP definition server (see README.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use avap_brain::{Brain, BrainConfig, TlsConfig};
use avap_wire::auth::{DEFAULT_API_KEY, DEFAULT_INTERNAL_KEY};
use avap_wire::guest_sig::GuestSigningKey;
use clap::Parser;

/// The AVAP definition server: serves the command catalog over gRPC.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve the catalog (what running with no subcommand does).
    Serve(Box<Serve>),
    /// Make a new Ed25519 guest signing key: writes its secret to FILE
    /// (mode 0600, refuses to overwrite) and prints the public key that goes
    /// into the hosts' AVAP_GUEST_KEYS.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a guest module: writes MODULE.sig (the signature and the public
    /// key that checks it), which the brain serves with the module (put both
    /// in the catalog folder as guest-vm.wasm and guest-vm.wasm.sig).
    SignGuest {
        /// The secret key file (from `keygen`).
        #[arg(long, env = "AVAP_GUEST_SIGNING_KEY_FILE")]
        key: PathBuf,
        /// The wasm module to sign.
        module: PathBuf,
    },
    /// Print the public key of a secret key file.
    PublicKey {
        #[arg(long, env = "AVAP_GUEST_SIGNING_KEY_FILE")]
        key: PathBuf,
    },
}

#[derive(clap::Args)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "BRAIN_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Catalog folder: `<name>.avap` commands, an optional `guest-vm.wasm`
    /// with its `guest-vm.wasm.sig`, an optional `rollout.json`.
    #[arg(long, env = "AVAP_CATALOG_DIR")]
    catalog: Option<PathBuf>,
    /// Token clients send as `x-avap-auth` (prefer the environment variable).
    #[arg(long, env = "API_KEY", default_value = DEFAULT_API_KEY, hide_env_values = true, hide_default_value = true)]
    api_key: String,
    /// Shared secret the catalog's keys are derived from (prefer the
    /// environment variable).
    #[arg(
        long,
        env = "AVAP_INTERNAL_KEY",
        default_value = DEFAULT_INTERNAL_KEY,
        hide_env_values = true,
        hide_default_value = true
    )]
    internal_key: String,
    /// Catalog folder rescan interval in milliseconds.
    #[arg(long, env = "AVAP_CATALOG_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    poll_ms: u64,
    /// Secret key file that signs guest modules which come without a
    /// `.sig` file (the built-in one included).
    #[arg(long, env = "AVAP_GUEST_SIGNING_KEY_FILE")]
    guest_signing_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) to serve gRPC with.
    #[arg(long, env = "BRAIN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "BRAIN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "BRAIN_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plaintext gRPC (no TLS certificate); logged as a warning.
    #[arg(long, env = "BRAIN_ALLOW_PLAINTEXT", default_value_t = false)]
    allow_plaintext: bool,
    /// Development: allow the published default keys, plaintext, and sign
    /// guests with the published development key. Never for a deployment.
    #[arg(long, env = "AVAP_DEV", default_value_t = false)]
    dev: bool,
    /// Serve the original AVAP language servers: entries signed with the
    /// shared secret itself (their scheme), default keys allowed; logged loudly.
    #[arg(long, env = "AVAP_ORIGINAL_SERVERS", default_value_t = false)]
    original_servers: bool,
    /// Address of the ops port (`/livez`, `/readyz`, `/metrics`); `off` for none.
    #[arg(long, env = "BRAIN_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    http_listen: OpsListen,
    /// Log format: `text` (no colour unless a terminal) or `json`.
    #[arg(long, env = "AVAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// After SIGTERM: seconds connections get to finish before the brain exits.
    #[arg(long, env = "AVAP_DRAIN_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    drain_secs: u64,
    /// Seconds between keepalive messages on an idle watch stream.
    #[arg(long, env = "BRAIN_KEEPALIVE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_secs: u64,
    /// Seconds a catalog's manifest is valid; the catalog is sealed again
    /// (new serial, same entries) every quarter of this. Hosts refuse an
    /// expired manifest and show a link that brings none newer as stale.
    #[arg(long, env = "BRAIN_MANIFEST_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=604_800))]
    manifest_ttl_secs: u64,
    /// Milliseconds a connection gets to finish its TLS handshake and send
    /// the HTTP/2 preface (gRPC port), or its request headers (ops port).
    #[arg(long, env = "BRAIN_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    header_timeout_ms: u64,
    /// gRPC connections open at once; at the cap the brain stops accepting
    /// until one closes.
    #[arg(long, env = "BRAIN_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `ip:port`, or `off`.
#[derive(Clone)]
struct OpsListen(Option<SocketAddr>);

impl std::str::FromStr for OpsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(OpsListen(None));
        }
        text.parse().map(|a| OpsListen(Some(a))).map_err(|e| format!("not an address (ip:port) or `off`: {e}"))
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn signing_key(path: &Path) -> anyhow::Result<GuestSigningKey> {
    let text = String::from_utf8(read(path, "the guest signing key")?).context("the key file is not text")?;
    GuestSigningKey::from_hex(&text).with_context(|| format!("{} is not a guest signing key", path.display()))
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = GuestSigningKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", key.to_hex()).as_bytes())?;
    println!("{}", key.public());
    eprintln!(
        "secret key written to {} (key id {}); give hosts the public key above in AVAP_GUEST_KEYS",
        out.display(),
        key.public().id()
    );
    Ok(())
}

fn sign_guest(key: &Path, module: &Path) -> anyhow::Result<()> {
    let key = signing_key(key)?;
    let bytes = read(module, "the module")?;
    anyhow::ensure!(bytes.starts_with(b"\0asm"), "{} is not a wasm binary module", module.display());
    let signature = key.sign_file(&bytes);
    let mut out = module.as_os_str().to_owned();
    out.push(".sig");
    let out = PathBuf::from(out);
    std::fs::write(&out, serde_json::to_string_pretty(&signature)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("{} signed by key {}: {}", module.display(), signature.key, out.display());
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serve = match cli.command {
        None => cli.serve,
        Some(Command::Serve(serve)) => *serve,
        Some(Command::Keygen { out }) => return keygen(&out),
        Some(Command::SignGuest { key, module }) => return sign_guest(&key, &module),
        Some(Command::PublicKey { key }) => {
            println!("{}", signing_key(&key)?.public());
            return Ok(());
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match serve.log_format {
        LogFormat::Json => tracing_subscriber::fmt().with_env_filter(filter).json().init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert_pem: read(cert, "the TLS certificate")?,
            key_pem: read(key, "the TLS key")?,
            client_ca_pem: serve.tls_client_ca.as_deref().map(|p| read(p, "the client CA")).transpose()?,
        }),
        _ => None,
    };
    let config = BrainConfig {
        catalog_dir: serve.catalog,
        api_key: serve.api_key,
        internal_key: serve.internal_key,
        poll_interval: Duration::from_millis(serve.poll_ms),
        dev: serve.dev,
        original_servers: serve.original_servers,
        guest_signing_key: serve.guest_signing_key.as_deref().map(signing_key).transpose()?.map(Arc::new),
        tls,
        allow_plaintext: serve.allow_plaintext,
        keepalive_interval: Duration::from_secs(serve.keepalive_secs),
        drain: Duration::from_secs(serve.drain_secs),
        manifest_ttl: Duration::from_secs(serve.manifest_ttl_secs),
        guest_pair_grace: BrainConfig::default().guest_pair_grace,
        header_timeout: Duration::from_millis(serve.header_timeout_ms),
        max_connections: serve.max_connections,
    };
    let brain = Brain::new(config)?;
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("cannot listen on {}", serve.listen))?;
    let addr = listener.local_addr().unwrap_or(serve.listen);
    tracing::info!(%addr, "avap-brain listening");
    // One signal, two servers: the ops port stops after the gRPC one drained.
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let ops = match serve.http_listen.0 {
        // The ops port is an aid: a port taken does not stop the catalog.
        Some(http) => match tokio::net::TcpListener::bind(http).await {
            Ok(http_listener) => {
                tracing::info!(addr = %http_listener.local_addr().unwrap_or(http), "ops port (no auth): /livez, /readyz, /metrics");
                let mut stopped = stopped_rx.clone();
                Some(tokio::spawn(brain.clone().serve_http(http_listener, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })))
            }
            Err(e) => {
                tracing::warn!(%http, error = %e, "cannot open the ops port; serving without /livez, /readyz, /metrics");
                None
            }
        },
        None => None,
    };
    let result = brain.serve(listener, shutdown_signal()).await;
    stopped_tx.send_replace(true);
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    result?;
    Ok(())
}
