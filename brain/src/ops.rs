//! What an operator's tools read from the brain, on its own HTTP port
//! (`BRAIN_HTTP_LISTEN`): `/livez`, `/readyz` (503 from shutdown on) and
//! `/metrics` (OpenMetrics text). The port takes at most
//! [`crate::OPS_MAX_CONNECTIONS`] connections, each of which must send its
//! request headers within the header timeout ([`avap_serve`]). Kubernetes can also probe the gRPC port
//! itself: the standard health service turns `NOT_SERVING` at shutdown.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The brain's metrics (prefix `avap_brain_`).
pub struct BrainMetrics {
    registry: Registry,
    pub(crate) entries: Gauge,
    pub(crate) serial: Gauge,
    pub(crate) watchers: Gauge,
    pub(crate) publishes: Counter,
    pub(crate) refusals: Counter,
    pub(crate) calls: Family<[(&'static str, &'static str); 1], Counter>,
    pub(crate) connections: Gauge,
    pub(crate) refused_connections: Family<[(&'static str, &'static str); 1], Counter>,
    pub(crate) guest_pair_waiting: Gauge,
    pub(crate) draining: AtomicBool,
}

impl BrainMetrics {
    pub(crate) fn new() -> BrainMetrics {
        let mut registry = Registry::with_prefix("avap_brain");
        let entries = Gauge::default();
        registry.register(
            "catalog_entries",
            "Entries of the catalog served now, its manifest included",
            entries.clone(),
        );
        let serial = Gauge::default();
        registry.register("catalog_serial", "Serial of the manifest served now", serial.clone());
        let watchers = Gauge::default();
        registry.register("watchers", "WatchCatalog streams open now", watchers.clone());
        let publishes = Counter::default();
        registry.register("publishes", "Catalogs published since start (the first included)", publishes.clone());
        let refusals = Counter::default();
        registry.register(
            "folder_refusals",
            "Times the catalog folder went from valid to refused (a file that does not parse, an unsigned guest, ...)",
            refusals.clone(),
        );
        let calls = Family::default();
        registry.register("calls", "DefinitionEngine calls answered, by rpc", calls.clone());
        let connections = Gauge::default();
        registry.register(
            "grpc_connections",
            "gRPC connections open now (past their TLS handshake and HTTP/2 preface)",
            connections.clone(),
        );
        let refused_connections = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "grpc_connections_refused",
            "gRPC connections closed before gRPC, by reason: handshake_timeout, tls, not_http2",
            refused_connections.clone(),
        );
        for reason in ["handshake_timeout", "tls", "not_http2"] {
            drop(refused_connections.get_or_create(&[("reason", reason)]));
        }
        let guest_pair_waiting = Gauge::default();
        registry.register(
            "guest_pair_waiting",
            "1 while the folder's guest-vm.wasm and guest-vm.wasm.sig do not match (a copy in progress), else 0",
            guest_pair_waiting.clone(),
        );
        BrainMetrics {
            registry,
            entries,
            serial,
            watchers,
            publishes,
            refusals,
            calls,
            connections,
            refused_connections,
            guest_pair_waiting,
            draining: AtomicBool::new(false),
        }
    }

    pub(crate) fn published(&self, entries: usize, serial: u64) {
        self.publishes.inc();
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.serial.set(i64::try_from(serial).unwrap_or(i64::MAX));
    }

    pub(crate) fn call(&self, rpc: &'static str) {
        self.calls.get_or_create(&[("rpc", rpc)]).inc();
    }

    pub(crate) fn refused_connection(&self, reason: &'static str) {
        self.refused_connections.get_or_create(&[("reason", reason)]).inc();
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub(crate) fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Counts an open watch stream while it lives.
pub(crate) struct Watcher(pub(crate) Gauge);

impl Watcher {
    pub(crate) fn open(gauge: &Gauge) -> Watcher {
        gauge.inc();
        Watcher(gauge.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.dec();
    }
}
