//! What the server holds for its lifetime: the engine, the live guest, the
//! gate, the limits and the metrics.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde_json::{Value, json};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::sandbox::{Gate, Guest, Limits, SandboxEngine};

pub struct AppState {
    pub engine: SandboxEngine,
    /// The live guest. Executions clone the `Arc` when they start and keep
    /// the module they started with; a swap replaces it for later ones.
    guest: RwLock<Arc<Guest>>,
    pub limits: Limits,
    pub gate: Gate,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    started: Instant,
}

impl AppState {
    /// Builds the engine and loads the built-in guest (compile, ABI check,
    /// probe). Fails only if the built-in guest itself is unusable.
    pub async fn new(config: &Config) -> anyhow::Result<Arc<AppState>> {
        let limits = config.limits();
        let engine = SandboxEngine::new(&limits)?;
        let guest = engine.load_guest(crate::GUEST_WASM, "built-in").await?;
        tracing::info!(version = %guest.info().version, digest = %guest.info().digest, "guest module loaded");
        Ok(Arc::new(AppState {
            gate: Gate::new(limits.max_concurrency, limits.queue_timeout),
            engine,
            guest: RwLock::new(Arc::new(guest)),
            limits,
            metrics: Metrics::new(),
            max_body_bytes: config.max_body_bytes,
            started: Instant::now(),
        }))
    }

    /// The guest new executions should use.
    pub fn guest(&self) -> Arc<Guest> {
        match self.guest.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn health(&self) -> Value {
        json!({
            "status": "ok",
            "service": "avap-host",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "guest": self.guest().info(),
            "catalog": { "source": "built-in" },
            "limits": self.limits,
        })
    }
}
