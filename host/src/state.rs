//! What the server holds for its lifetime: the engine, the live guest and
//! catalog, the gate, the limits, the sync status and the metrics.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use avap_policy::json::{GuestOutput, decode_output};

use crate::abi::GuestInput;
use crate::catalog::{self, CatalogError, LiveCatalog};
use crate::config::Config;
use crate::front::FrontDoor;
use crate::metrics::Metrics;
use crate::sandbox::{Execution, Gate, Guest, Limits, SandboxEngine, SandboxError, module_digest};

/// The script every candidate guest must run, and what it must answer.
const SELF_TEST_SCRIPT: &str = "addVar(a, 1)\nb = a + 41\naddResult(b)";

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
    live: RwLock<Arc<Live>>,
    pub limits: Limits,
    pub gate: Gate,
    pub metrics: Metrics,
    /// The front door: connection and body caps, cross-site rules, tokens.
    pub front: FrontDoor,
    pub internal_key: Vec<u8>,
    allow_guest_downgrade: bool,
    /// One catalog application at a time.
    apply_lock: tokio::sync::Mutex<()>,
    pub sync: Mutex<SyncStatus>,
    started: Instant,
}

/// The definition server as the host last saw it, for `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncStatus {
    /// `standalone`, `connecting`, `watch` or `poll`.
    pub mode: &'static str,
    pub address: Option<String>,
    pub reachable: bool,
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

/// Seconds-precision RFC 3339 (UTC) without pulling in a date library.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// What applying a catalog did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Same version hash as the live catalog: nothing to do.
    Unchanged,
    /// New catalog live; `Some(version)` when the guest was swapped too.
    Updated { guest_swapped_to: Option<String> },
}

impl AppState {
    /// Builds the engine and loads the built-in guest (compile, ABI check,
    /// probe). Fails only if the built-in guest itself is unusable.
    pub async fn new(config: &Config) -> anyhow::Result<Arc<AppState>> {
        let limits = config.limits();
        let metrics = Metrics::new();
        let mut capabilities = config.capabilities().await?;
        capabilities.calls = Some(metrics.capability_calls());
        tracing::info!(granted = ?capabilities.granted(), "capabilities");
        let engine = SandboxEngine::with_capabilities(&limits, Arc::new(capabilities))?;
        let guest = Arc::new(engine.load_guest(crate::GUEST_WASM, "built-in").await?);
        tracing::info!(version = %guest.info().version, digest = %guest.info().digest, "guest module loaded");
        let catalog = Arc::new(LiveCatalog::built_in());
        let runner = match prepare_runner(&engine, &limits, &guest, &catalog).await {
            Ok(prepared) => prepared.guest,
            Err(e) => {
                tracing::warn!(error = %e, "the built-in guest could not be prepared; its executions start unprepared");
                guest.clone()
            }
        };
        if config.internal_key == avap_wire::auth::DEFAULT_INTERNAL_KEY {
            tracing::warn!("AVAP_INTERNAL_KEY is the public default: anyone can sign packages this host accepts");
        }
        Ok(Arc::new(AppState {
            gate: Gate::new(limits.max_concurrency, limits.queue_timeout),
            engine,
            live: RwLock::new(Arc::new(Live { guest, catalog, runner })),
            limits,
            metrics,
            front: FrontDoor::new(config.front()?),
            internal_key: config.internal_key.clone().into_bytes(),
            allow_guest_downgrade: config.allow_guest_downgrade,
            apply_lock: tokio::sync::Mutex::new(()),
            sync: Mutex::new(SyncStatus {
                mode: if config.standalone { "standalone" } else { "connecting" },
                address: (!config.standalone).then(|| config.brain_url()),
                reachable: false,
                last_error: None,
                refusals: 0,
                last_refusal: None,
                last_refusal_at: None,
            }),
            started: Instant::now(),
        }))
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
    pub async fn run_guest(&self, guest: &Guest, input: &GuestInput<'_>) -> Result<Execution, SandboxError> {
        let bytes = serde_json::to_vec(input).map_err(|e| SandboxError::Internal(e.into()))?;
        self.engine.execute(guest, &self.limits, &bytes).await
    }

    /// Vets a catalog from the definition server and, if every step passes,
    /// makes it (and its guest module, if new) live, prepared: the guest is
    /// snapshotted with the catalog before anything is swapped. All or
    /// nothing, off the request path.
    pub async fn apply_catalog(&self, response: &avap_wire::pb::CatalogResponse) -> Result<Applied, CatalogError> {
        let _one_at_a_time = self.apply_lock.lock().await;
        let verified = catalog::verify(response, &self.internal_key)?;
        let live = self.live();
        let new_module = verified.guest_module.as_deref().filter(|m| module_digest(m) != live.guest.info().digest);
        if live.catalog.version_hash.as_deref() == Some(verified.version_hash.as_str()) && new_module.is_none() {
            return Ok(Applied::Unchanged);
        }
        let candidate = match new_module {
            Some(module) => Some(Arc::new(self.vet_guest(module).await?)),
            None => None,
        };
        let guest = candidate.clone().unwrap_or_else(|| live.guest.clone());
        let guest_json = verified.guest_json();
        let avap = verified.avap.clone();
        let catalog = Arc::new(verified.into_live(guest_json));
        let prepared = prepare_runner(&self.engine, &self.limits, &guest, &catalog).await?;
        if let Some((name, reason)) = prepared.catalog_errors.into_iter().next() {
            return Err(CatalogError::Invalid { name, reason });
        }
        if !prepared.guest.is_prepared() {
            // A guest that cannot be prepared checks each command on its own.
            for (name, source) in &avap {
                self.check_avap_command(&guest, name, source).await?;
            }
        }
        let swapped_to = candidate.as_ref().map(|g| g.info().version.clone());
        if let Some(guest) = &candidate {
            tracing::info!(version = %guest.info().version, digest = %guest.info().digest, "guest module swapped in");
            self.metrics.guest_swap();
        }
        tracing::info!(
            version_hash = ?catalog.version_hash,
            entries = catalog.entries,
            snapshot = ?prepared.guest.info().snapshot,
            "catalog applied"
        );
        write(&self.live, Arc::new(Live { guest, catalog, runner: prepared.guest }));
        Ok(Applied::Updated { guest_swapped_to: swapped_to })
    }

    /// Records a refused update where operators look: the log, `/health`
    /// and `/metrics`.
    pub fn record_refusal(&self, err: &CatalogError) {
        tracing::error!(error = %err, "catalog update refused; the previous catalog stays live");
        self.metrics.catalog_sync("refused");
        self.update_sync(|s| {
            s.refusals += 1;
            s.last_refusal = Some(err.to_string());
            s.last_refusal_at = Some(SystemTime::now());
        });
    }

    /// Every step a candidate guest must pass before it serves: compile off
    /// the request path, import and ABI checks, probe, no downgrade, and a
    /// self-test execution.
    async fn vet_guest(&self, module: &[u8]) -> Result<Guest, CatalogError> {
        let refuse = |reason: String| CatalogError::Guest(reason);
        let guest = self.engine.load_guest(module, "brain").await.map_err(|e| refuse(e.to_string()))?;
        let current = self.guest();
        let (new_v, old_v) = (&guest.info().version, &current.info().version);
        if catalog::compare_versions(new_v, old_v).is_lt() && !self.allow_guest_downgrade {
            return Err(refuse(format!(
                "version {new_v} is older than the live {old_v} (set AVAP_ALLOW_GUEST_DOWNGRADE to allow)"
            )));
        }
        let input = GuestInput::bare(SELF_TEST_SCRIPT, None);
        let execution = self.run_guest(&guest, &input).await.map_err(|e| refuse(format!("self-test: {e}")))?;
        let output = decode_output(&execution.output).map_err(|e| refuse(format!("self-test output: {e}")))?;
        let result: Option<Value> = output.result.and_then(|r| serde_json::from_str(r.get()).ok());
        if !output.ok || result != Some(json!({"b": 42})) {
            return Err(refuse(format!("self-test gave a wrong answer: {:?}", output.error.or(output.mode))));
        }
        Ok(guest)
    }

    /// An `avap` entry must be one valid function definition named like the
    /// entry, as the live guest parses it.
    async fn check_avap_command(&self, guest: &Guest, name: &str, source: &str) -> Result<(), CatalogError> {
        let invalid = |reason: String| CatalogError::Invalid { name: name.to_string(), reason };
        let execution = self
            .run_guest(guest, &GuestInput::bare(source, Some("check")))
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let output: GuestOutput<'_> = decode_output(&execution.output).map_err(|e| invalid(e.to_string()))?;
        if !output.ok {
            return Err(invalid(output.error.unwrap_or_else(|| "does not parse".into())));
        }
        match output.functions.as_deref() {
            Some([only]) if only == name => Ok(()),
            other => Err(invalid(format!("must define exactly one function named `{name}`, defines {other:?}"))),
        }
    }

    pub fn health(&self) -> Value {
        let live = self.live();
        let catalog = live.catalog.clone();
        let sync = match self.sync.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let degraded = sync.mode != "standalone" && catalog.source == catalog::CatalogSource::BuiltIn;
        json!({
            "status": "ok",
            "service": "avap-host",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "guest": live.runner.info(),
            "catalog": {
                "source": catalog.source,
                "version_hash": catalog.version_hash,
                "commands": catalog.entries,
                "last_sync": catalog.synced_at.map(rfc3339),
                "note": degraded.then_some("definition server not synced yet: serving the built-in catalog and guest"),
            },
            "brain": sync,
            "limits": self.limits,
            "front_door": self.front.config,
            "capabilities": self.capabilities_health(),
        })
    }

    /// What scripts may reach, and within which caps.
    fn capabilities_health(&self) -> Value {
        let caps = self.engine.capabilities();
        let http = caps.http.as_ref().map(|h| {
            let c = h.config();
            json!({
                "allow": c.allow.iter().map(|e| format!("{}:{}", e.host, e.port)).collect::<Vec<_>>(),
                "timeout_ms": c.timeout.as_millis(),
                "max_response_bytes": c.max_response_bytes,
                "max_requests": c.max_requests,
                "max_redirects": c.max_redirects,
                "max_connections": c.max_connections,
            })
        });
        let db = caps.db.as_ref().map(|d| {
            let c = d.config();
            json!({
                "backend": d.backend(),
                "max_connections": c.max_connections,
                "statement_timeout_ms": c.statement_timeout.as_millis(),
                "max_rows": c.max_rows,
                "max_queries": c.max_queries,
                "privileged_role_allowed": c.allow_privileged_role,
            })
        });
        json!({ "granted": caps.granted(), "http": http, "db": db })
    }
}

/// The runner of `guest` for `catalog`: the guest prepared with it (and
/// self-tested), or the guest itself when it cannot be prepared.
async fn prepare_runner(
    engine: &SandboxEngine,
    limits: &Limits,
    guest: &Arc<Guest>,
    catalog: &LiveCatalog,
) -> Result<PreparedRunner, CatalogError> {
    let refuse = |reason: String| CatalogError::Guest(reason);
    let doc = format!("{{\"catalog\":{}}}", catalog.guest_json.as_deref().map_or("{}", |c| c.get()));
    // Preparing parses the whole catalog: more time and fuel than a script.
    let prepare_limits = Limits { timeout: PREPARE_TIMEOUT, fuel: limits.fuel.saturating_mul(10), ..limits.clone() };
    let Some(prepared) =
        engine.prepare(guest, doc.as_bytes(), &prepare_limits).await.map_err(|e| refuse(e.to_string()))?
    else {
        return Ok(PreparedRunner { guest: guest.clone(), catalog_errors: Vec::new() });
    };
    let runner = Arc::new(prepared.guest);
    // The snapshot must run: a check of a trivial script, whatever the
    // catalog allows.
    let input = GuestInput::bare("b = 1 + 41", Some("check"));
    let bytes = serde_json::to_vec(&input).map_err(|e| refuse(e.to_string()))?;
    let execution =
        engine.execute(&runner, limits, &bytes).await.map_err(|e| refuse(format!("snapshot self-test: {e}")))?;
    let output = decode_output(&execution.output).map_err(|e| refuse(format!("snapshot self-test output: {e}")))?;
    if !output.ok {
        return Err(refuse(format!("the snapshot failed its self-test: {:?}", output.error)));
    }
    Ok(PreparedRunner { guest: runner, catalog_errors: prepared.catalog_errors })
}

/// How long preparing a guest with a catalog may take.
const PREPARE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct PreparedRunner {
    guest: Arc<Guest>,
    catalog_errors: Vec<(String, String)>,
}

fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<Arc<T>>, value: Arc<T>) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
    }
}
