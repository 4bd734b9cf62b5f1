//! `avap-brain`: the AVAP definition server (see README.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use avap_brain::{Brain, BrainConfig};
use avap_wire::auth::{DEFAULT_API_KEY, DEFAULT_INTERNAL_KEY};
use clap::Parser;

/// The AVAP definition server: serves the command catalog over gRPC.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "BRAIN_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Catalog folder: `<name>.avap` commands and an optional `guest-vm.wasm`.
    #[arg(long, env = "AVAP_CATALOG_DIR")]
    catalog: Option<PathBuf>,
    /// Token clients send as `x-avap-auth` (prefer the environment variable).
    #[arg(long, env = "API_KEY", default_value = DEFAULT_API_KEY, hide_env_values = true, hide_default_value = true)]
    api_key: String,
    /// HMAC key of the signed packages (prefer the environment variable).
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = BrainConfig {
        catalog_dir: cli.catalog,
        api_key: cli.api_key,
        internal_key: cli.internal_key,
        poll_interval: Duration::from_millis(cli.poll_ms),
    };
    let brain = Brain::new(config)?;
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr().unwrap_or(cli.listen);
    tracing::info!(%addr, "avap-brain listening");
    brain.serve(listener, shutdown_signal()).await?;
    Ok(())
}
