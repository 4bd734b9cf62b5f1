//! Prometheus metrics, one registry per server (no process globals, so
//! servers started side by side in tests keep their own counts).

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    rejects: Family<Labels, Counter>,
    duration: Histogram,
    active: Gauge,
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
        Metrics { registry: Mutex::new(registry), requests, rejects, duration, active }
    }

    /// Registers an extra metric (used by other subsystems of the host).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    pub fn request(&self, outcome: &'static str) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejects.get_or_create(&[("reason", reason)]).inc();
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
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }
}

pub struct ActiveGuard<'a>(&'a Gauge);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
