//! What the server holds for its lifetime: the engine, the live guest and
//! catalog, the gate, the limits, the sync status and the metrics. How a
//! catalog and a guest become live is [`crate::catalog::rollout`]; what
//! `/health` shows of all this is [`crate::api::health`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use crate::capability::Capabilities;
use crate::catalog::{LiveCatalog, Trust, rollout};
use crate::config::Config;
use crate::front::FrontDoor;
use crate::metrics::Metrics;
use crate::runtime::abi::GuestInput;
use crate::runtime::{Execution, Gate, Guest, Limits, SandboxEngine, SandboxError};

/// What executions run against, swapped whole: an execution clones the
/// `Arc` when it starts and keeps what it started with.
pub struct Live {
    /// The guest module as loaded and vetted.
    pub guest: Arc<Guest>,
    pub catalog: Arc<LiveCatalog>,
    /// What executions instantiate: the guest prepared with the catalog (a
    /// snapshot), or the guest itself when it cannot be prepared (the
    /// catalog then travels in each input).
    pub runner: Arc<Guest>,
}

pub struct AppState {
    pub engine: SandboxEngine,
    pub(crate) live: RwLock<Arc<Live>>,
    pub limits: Limits,
    pub gate: Gate,
    pub metrics: Metrics,
    /// The front door: connection and body caps, cross-site rules, tokens.
    pub front: FrontDoor,
    /// The keys, the trusted guest keys, the manifest rule, the caps on the
    /// definition server, this host's roll-out bucket.
    pub trust: Arc<Trust>,
    /// One catalog application at a time.
    pub(crate) apply_lock: tokio::sync::Mutex<()>,
    pub sync: Mutex<SyncStatus>,
    pub(crate) started: Instant,
    /// A new guest's probation.
    pub(crate) canary: crate::catalog::canary::Canary,
    /// The highest manifest serial taken (0: none): replays are checked
    /// against it, whatever is live.
    pub(crate) high_serial: std::sync::atomic::AtomicU64,
    /// Set at SIGTERM: `/readyz` answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    /// Ready without a synced catalog: standalone, or `AVAP_READY_WITHOUT_BRAIN`.
    ready_without_brain: bool,
    /// Where `/api/v1/compile` also stores its packages (`--compile-store`).
    pub compile_store: Option<crate::compile_store::CompileStore>,
}

/// How the host follows the definition server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// It never contacts one (`AVAP_STANDALONE`).
    Standalone,
    /// Not answered yet.
    Connecting,
    /// Following its watch stream.
    Watch,
    /// Polling `SyncCatalog`.
    Poll,
}

/// The definition server as the host last saw it, for `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncStatus {
    pub mode: SyncMode,
    pub address: Option<String>,
    /// `tls` (certificate verified) or `plaintext`.
    pub transport: &'static str,
    pub reachable: bool,
    /// `live` (messages arriving), `stale` (a watch stream went silent past
    /// the idle timeout), `unreachable`, `connecting`, or `standalone`.
    pub state: &'static str,
    #[serde(serialize_with = "ser_time")]
    pub last_message_at: Option<SystemTime>,
    /// A guest the catalog pins that this host is not taking yet (staged
    /// roll-out), and why.
    pub guest_hold: Option<String>,
    pub last_error: Option<String>,
    pub refusals: u64,
    pub last_refusal: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub last_refusal_at: Option<SystemTime>,
}

fn ser_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Seconds-precision RFC 3339 in UTC (`2026-11-18T11:06:40Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl AppState {
    /// Builds the engine and loads the built-in guest (compile, ABI check,
    /// probe). Fails only if the built-in guest itself is unusable.
    pub async fn new(config: &Config) -> anyhow::Result<Arc<AppState>> {
        // First: a host with a published key or an unauthenticated brain
        // link does not start at all (unless a flag says so, loudly).
        let trust = Arc::new(Trust::from_config(config)?);
        let limits = config.limits();
        let metrics = Metrics::new();
        let mut capabilities = Capabilities::open(config).await?;
        capabilities.calls = Some(metrics.capability_calls());
        tracing::info!(granted = ?capabilities.granted(), "capabilities");
        if capabilities.db.is_some() && config.db_url.starts_with("sqlite::memory:") {
            tracing::warn!(
                "the db capability gives each execution a scratch in-memory SQLite database of its own, gone when it \
                 ends: nothing is kept between requests (set AVAP_DB_URL to a PostgreSQL database or sqlite:PATH \
                 to keep data)"
            );
        }
        let mut engine = SandboxEngine::with_capabilities(&limits, Arc::new(capabilities))?;
        if let Some(dir) = config.artifact_dir() {
            engine.keep_artifacts_in(&dir);
        }
        let guest = Arc::new(engine.load_guest(crate::GUEST_WASM, "built-in").await?);
        tracing::info!(version = %guest.info().version, digest = %guest.info().digest, "guest module loaded");
        let catalog = Arc::new(LiveCatalog::built_in());
        let runner = match rollout::prepare_runner(&engine, &limits, &guest, &catalog).await {
            Ok(prepared) => prepared.guest,
            Err(e) => {
                tracing::warn!(error = %e, "the built-in guest could not be prepared; its executions start unprepared");
                guest.clone()
            }
        };
        metrics.guest_info(runner.info());
        metrics.catalog_info(&catalog);
        let compile_store =
            crate::compile_store::CompileStore::from_url(&config.compile_store, &config.compile_store_schema)?;
        if let Some(store) = &compile_store {
            tracing::info!(
                schema = %config.compile_store_schema,
                tls = store.tls(),
                "compiled packages are also stored in the compile store's avap_bytecode table"
            );
        }
        let standalone = config.is_standalone();
        Ok(Arc::new(AppState {
            compile_store,
            gate: Gate::new(limits.max_concurrency, limits.queue_timeout),
            engine,
            live: RwLock::new(Arc::new(Live { guest, catalog, runner })),
            limits,
            metrics,
            front: FrontDoor::new(config.front()),
            trust,
            apply_lock: tokio::sync::Mutex::new(()),
            sync: Mutex::new(SyncStatus {
                mode: if standalone { SyncMode::Standalone } else { SyncMode::Connecting },
                address: (!standalone).then(|| config.brain_url()),
                transport: if config.brain_tls_ca.is_some() { "tls" } else { "plaintext" },
                reachable: false,
                state: if standalone { "standalone" } else { "connecting" },
                last_message_at: None,
                guest_hold: None,
                last_error: None,
                refusals: 0,
                last_refusal: None,
                last_refusal_at: None,
            }),
            started: Instant::now(),
            canary: Default::default(),
            high_serial: std::sync::atomic::AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            ready_without_brain: standalone || config.ready_without_brain,
        }))
    }

    /// Whether this host should get traffic (`/readyz`): a guest is loaded
    /// (always, once built), it is not draining, and unless standalone or
    /// `AVAP_READY_WITHOUT_BRAIN`, a catalog from the definition server is
    /// live. `Err` says why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return Err("draining: the host is shutting down".into());
        }
        if !self.ready_without_brain && self.catalog().source != crate::catalog::CatalogSource::Brain {
            let (error, refusal) = match self.sync.lock() {
                Ok(s) => (s.last_error.clone(), s.last_refusal.clone()),
                Err(p) => {
                    let s = p.into_inner();
                    (s.last_error.clone(), s.last_refusal.clone())
                }
            };
            // A catalog that arrived and was refused is not one that has
            // not arrived: say which, and why.
            return Err(match (refusal, error) {
                (Some(why), _) => format!("{REFUSED}: {why}"),
                (None, Some(e)) => format!("{NOT_YET}: {e}"),
                (None, None) => NOT_YET.into(),
            });
        }
        Ok(())
    }

    /// [`AppState::readiness`]'s reason without details (for callers
    /// without the token).
    pub fn readiness_brief(&self) -> String {
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return "draining: the host is shutting down".into();
        }
        let refused = match self.sync.lock() {
            Ok(s) => s.last_refusal.is_some(),
            Err(p) => p.into_inner().last_refusal.is_some(),
        };
        if refused { format!("{REFUSED} (the reason is in /health, with a token)") } else { NOT_YET.into() }
    }

    /// The definition server's address, for log lines.
    pub fn sync_address(&self) -> String {
        let s = match self.sync.lock() {
            Ok(s) => s.address.clone(),
            Err(p) => p.into_inner().address.clone(),
        };
        s.unwrap_or_default()
    }

    /// Starts the drain: `/readyz` answers 503 from now on.
    pub fn begin_drain(&self) {
        if !self.draining.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::info!(
                drain = ?self.front.config.drain_timeout,
                "draining: /readyz answers 503, no new connections, executions in flight finish"
            );
        }
    }

    /// What new executions run against.
    pub fn live(&self) -> Arc<Live> {
        read(&self.live)
    }

    /// The live guest module.
    pub fn guest(&self) -> Arc<Guest> {
        self.live().guest.clone()
    }

    /// The live catalog.
    pub fn catalog(&self) -> Arc<LiveCatalog> {
        self.live().catalog.clone()
    }

    pub fn update_sync(&self, f: impl FnOnce(&mut SyncStatus)) {
        match self.sync.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Runs one document through `guest` in a fresh instance. The caller
    /// holds a gate slot (or is the catalog applier, which has a reserved
    /// pool slot) and reads the output with [`decode_output`].
    ///
    /// A catalog carried in the input (a guest that could not be prepared)
    /// does not count against the request's input limit: the definition
    /// server's message cap bounds it instead.
    pub async fn run_guest(&self, guest: &Guest, input: &GuestInput<'_>) -> Result<Execution, SandboxError> {
        let bytes = serde_json::to_vec(input).map_err(|e| SandboxError::Internal(e.into()))?;
        match input.catalog.map(|c| c.get().len()) {
            Some(catalog) if catalog > 0 => {
                let limits = Limits {
                    max_input_bytes: self.limits.max_input_bytes.saturating_add(catalog),
                    ..self.limits.clone()
                };
                self.engine.execute(guest, &limits, &bytes).await
            }
            _ => self.engine.execute(guest, &self.limits, &bytes).await,
        }
    }
}

/// `/readyz`'s reasons before the first catalog from the definition server.
const NOT_YET: &str = "no catalog from the definition server yet";
const REFUSED: &str = "every catalog the definition server sent was refused";

pub(crate) fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Replaces the value with `f(current)` under the write lock, so nothing
/// written in between is lost.
pub(crate) fn update<T>(lock: &RwLock<Arc<T>>, f: impl FnOnce(&Arc<T>) -> Arc<T>) {
    let mut guard = match lock.write() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *guard = f(&guard);
}

pub(crate) fn write<T>(lock: &RwLock<Arc<T>>, value: Arc<T>) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_to_the_second() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_999);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
    }
}
