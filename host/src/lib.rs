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

#![forbid(unsafe_code)]

pub mod api;
pub mod capability;
pub mod catalog;
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
