//! Prometheus metrics, one registry per server (no process globals, so
//! servers started side by side in tests keep their own counts).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Outcome;

type Labels = [(&'static str, &'static str); 1];

/// What became of a catalog the definition server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncResult {
    Applied,
    Unchanged,
    Refused,
}

impl SyncResult {
    pub const fn label(self) -> &'static str {
        match self {
            SyncResult::Applied => "applied",
            SyncResult::Unchanged => "unchanged",
            SyncResult::Refused => "refused",
        }
    }
}

/// A histogram family whose histograms share one set of buckets.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 us .. ~3.3 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16))
}

/// What the capabilities record of their own calls: the count by
/// `capability` and `result`, and the latency by `capability`.
#[derive(Clone)]
pub struct CapabilityCalls {
    pub calls: Family<[(&'static str, &'static str); 2], Counter>,
    pub duration: Histograms<Labels>,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    rejects: Family<Labels, Counter>,
    duration: Histogram,
    active: Gauge,
    catalog_syncs: Family<Labels, Counter>,
    guest_swaps: Counter,
    capability_calls: CapabilityCalls,
    queue_wait: Histogram,
    catalog_info: Family<Vec<(&'static str, String)>, Gauge>,
    open_connections: Gauge,
    catalog_refusals: Family<Labels, Counter>,
    guest_info: Family<Vec<(&'static str, String)>, Gauge>,
    catalog_serial: Gauge,
    brain_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("avap");
        let requests = Family::<Labels, Counter>::default();
        registry.register("requests", "Execute requests by outcome", requests.clone());
        let rejects = Family::<Labels, Counter>::default();
        registry.register("rejects", "Requests turned away before execution, by reason", rejects.clone());
        // 100 us .. ~3.3 s, doubling.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "execution_duration_seconds",
            "Time from instantiation to output of one sandboxed execution",
            duration.clone(),
        );
        let active = Gauge::default();
        registry.register("active_executions", "Executions running now", active.clone());
        let catalog_syncs = Family::<Labels, Counter>::default();
        registry.register(
            "catalog_syncs",
            "Catalogs received from the definition server, by result (applied, unchanged, refused)",
            catalog_syncs.clone(),
        );
        let guest_swaps = Counter::default();
        registry.register("guest_swaps", "Guest modules swapped in without a restart", guest_swaps.clone());
        let capability_calls = CapabilityCalls {
            calls: Family::default(),
            duration: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
        };
        registry.register(
            "capability_calls",
            "Calls of the http and db capabilities by result (ok, error: refused, failed or over a cap)",
            capability_calls.calls.clone(),
        );
        registry.register(
            "capability_duration_seconds",
            "Time one call of the http or db capability took, by capability",
            capability_calls.duration.clone(),
        );
        let queue_wait = latency_buckets();
        registry.register(
            "queue_wait_seconds",
            "Time a request waited for an execution slot (the gate)",
            queue_wait.clone(),
        );
        let catalog_info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register(
            "catalog_info",
            "The catalog this host runs (always 1), by version_hash and source",
            catalog_info.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        let catalog_refusals = Family::<Labels, Counter>::default();
        registry.register(
            "catalog_refusals",
            "Catalogs refused, by reason (integrity, invalid_entry, guest_vetting, guest_signature, too_large, \
             guest_not_binary, no_manifest, manifest, replay, canary, internal)",
            catalog_refusals.clone(),
        );
        for reason in crate::catalog::CatalogError::REASONS {
            drop(catalog_refusals.get_or_create(&[("reason", reason)]));
        }
        let guest_info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        registry.register(
            "guest_info",
            "The guest this host runs (always 1), by version and digest",
            guest_info.clone(),
        );
        let catalog_serial = Gauge::default();
        registry.register(
            "catalog_manifest_serial",
            "Serial of the live catalog's manifest (0: none)",
            catalog_serial.clone(),
        );
        let brain_up = Gauge::default();
        registry.register("brain_up", "Whether the definition server's link is live (1) or not (0)", brain_up.clone());
        Metrics {
            registry,
            requests,
            rejects,
            duration,
            active,
            catalog_syncs,
            guest_swaps,
            capability_calls,
            queue_wait,
            catalog_info,
            open_connections,
            catalog_refusals,
            guest_info,
            catalog_serial,
            brain_up,
        }
    }

    /// Counts a refused catalog by [`crate::catalog::CatalogError::reason`].
    pub fn catalog_refusal(&self, reason: &'static str) {
        self.catalog_refusals.get_or_create(&[("reason", reason)]).inc();
    }

    /// Sets `avap_catalog_info` to the catalog now live (and only it).
    pub fn catalog_info(&self, catalog: &crate::catalog::LiveCatalog) {
        let source = match catalog.source {
            crate::catalog::CatalogSource::BuiltIn => "built-in",
            crate::catalog::CatalogSource::Brain => "brain",
        };
        self.catalog_info.clear();
        self.catalog_info
            .get_or_create(&vec![
                ("version_hash", catalog.version_hash.clone().unwrap_or_default()),
                ("source", source.to_string()),
            ])
            .set(1);
    }

    /// Counts the time a request waited at the gate.
    pub fn observe_queue_wait(&self, seconds: f64) {
        self.queue_wait.observe(seconds);
    }

    /// Sets `avap_guest_info` to the guest now live (and only it).
    pub fn guest_info(&self, info: &crate::runtime::GuestInfo) {
        self.guest_info.clear();
        self.guest_info.get_or_create(&vec![("version", info.version.clone()), ("digest", info.digest.clone())]).set(1);
    }

    pub fn catalog_serial(&self, serial: Option<u64>) {
        self.catalog_serial.set(serial.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)));
    }

    pub fn brain_up(&self, up: bool) {
        self.brain_up.set(i64::from(up));
    }

    /// Counts an execute or compile request by how it ended.
    pub fn request(&self, outcome: Outcome) {
        self.requests.get_or_create(&[("outcome", outcome.kind())]).inc();
    }

    /// Counts a request turned away before anything ran.
    pub fn reject(&self, outcome: Outcome) {
        let reason = outcome.reject_reason().unwrap_or(outcome.kind());
        self.rejects.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn catalog_sync(&self, result: SyncResult) {
        self.catalog_syncs.get_or_create(&[("result", result.label())]).inc();
    }

    /// The counter the capabilities increment.
    pub fn capability_calls(&self) -> CapabilityCalls {
        self.capability_calls.clone()
    }

    /// The gauge the front door keeps of open client connections.
    pub fn open_connections(&self) -> Gauge {
        self.open_connections.clone()
    }

    pub fn guest_swap(&self) {
        self.guest_swaps.inc();
    }

    pub fn observe_duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Marks one execution as running until the guard is dropped.
    pub fn active_guard(&self) -> ActiveGuard<'_> {
        self.active.inc();
        ActiveGuard(&self.active)
    }

    /// The OpenMetrics text exposition (Prometheus scrapes it as is).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub struct ActiveGuard<'a>(&'a Gauge);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
