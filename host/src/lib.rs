//! `avap-host`: an HTTP server that runs AVAP scripts, each in a fresh
//! wasmtime instance of the guest interpreter, within memory, fuel and
//! wall-clock caps.
//!
//! Where to read what:
//! - `avap_abi` (the `abi/` crate): the contract with the guest, every
//!   import, export and shared cap; [`runtime::abi`] checks a module
//!   against it (with `docs/ABI.md`).
//! - [`capability`]: the `avap` imports (HTTP in [`capability::http`],
//!   database in [`capability::db`]) and their limits.
//! - [`runtime`]: the engine, the per-execution store and its limits, the
//!   gate, snapshots of prepared guests.
//! - [`front`]: the front door: connection and body caps, timeouts,
//!   cross-site requests, API tokens.
//! - [`api`]: the HTTP routes, and [`api::Outcome`]: how every request
//!   ends, with its status and `kind`.
//! - [`catalog`]: verifying the definition server's catalog, following it
//!   ([`catalog::sync`]) and rolling it out ([`catalog::rollout`]).
//! - [`config`]: flags and environment variables, and their defaults.

// One `unsafe` block, with its reason: reading back a compiled guest this
// host authenticated (runtime::artifacts). Nothing else may add one.
#![deny(unsafe_code)]

pub mod api;
pub mod capability;
pub mod catalog;
pub mod compile_store;
pub mod config;
pub mod front;
pub mod metrics;
pub mod runtime;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use state::AppState;

/// The guest interpreter built from this workspace (`guest-vm`), embedded
/// so the host runs with no other file or service.
pub use avap_guest_embed::GUEST_WASM;

/// Serves the API on `listener` through the front door until `shutdown`
/// resolves; then `/readyz` answers 503, no new connection is taken, and
/// requests in flight get `AVAP_DRAIN_SECS` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.front.config.clone();
    let open = state.metrics.open_connections();
    let draining = state.clone();
    let shutdown = async move {
        shutdown.await;
        draining.begin_drain();
    };
    front::serve(listener, api::router(state), &config, open, shutdown).await
}

/// The whole server as `avap-host` runs it (and `avap serve`): builds the
/// state from `config`, follows the definition server unless standalone,
/// binds, says where to reach it, and serves until `shutdown` resolves.
/// Logging must be set up by the caller ([`telemetry::init`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let state = AppState::new(&config).await?;
    if config.is_standalone() {
        tracing::info!("standalone: serving the built-in catalog and guest; no definition server is contacted");
    } else {
        let sync = catalog::sync::SyncConfig::from_config(&config)?;
        catalog::sync::start(state.clone(), sync).await;
    }
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr().unwrap_or(addr);
    let reach = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::SocketAddr::from(([127, 0, 0, 1], local.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local.port()))
        }
        _ => local,
    };
    // The token itself is never logged: the line names where it comes from.
    let auth = if state.front.tokens_required() { " -H 'Authorization: Bearer <one of AVAP_API_TOKENS>'" } else { "" };
    tracing::info!(
        %local,
        "avap-host listening; try: curl -s{auth} http://{reach}/api/v1/execute -d '{{\"script\": \"addVar(a, 1)\\naddResult(a)\"}}'"
    );
    if !addr.ip().is_loopback() && !state.front.tokens_required() {
        tracing::warn!(
            %addr,
            "listening beyond this machine with no AVAP_API_TOKENS: anyone who can reach this port can run scripts"
        );
    }
    serve(listener, state, shutdown).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM: what ends [`run`] in the binaries.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
