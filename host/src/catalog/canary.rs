//! A new guest's probation. From its first execution, for
//! [`WINDOW_RUNS`] executions (or [`WINDOW`] once it has run at least
//! [`MIN_RUNS`] times), the host counts the executions the interpreter
//! itself failed: a trap or an ABI fault during the run, or an output
//! document off the ABI (outcomes `guest_crash` and `internal`); never a
//! script's own errors or the limits a script can run into. If at least
//! [`MIN_FAULTS`] failed and they are at least one run in five, the host
//! goes back to the guest it ran before (the last one that passed, if
//! several swaps overlap), refuses that module for the life of the process,
//! and reports it like any refusal: the log, `/health`
//! (`brain.last_refusal`, `brain.guest_hold`), and
//! `avap_catalog_refusals_total{reason="canary"}`.
//!
//! The previous guest's rate is taken as zero: an input that crashes the
//! old interpreter as well counts against the new one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::runtime::Guest;

/// Executions after which a new guest has passed.
pub const WINDOW_RUNS: u32 = 200;
/// Time after its first execution after which a new guest that has run
/// [`MIN_RUNS`] times has passed.
pub const WINDOW: Duration = Duration::from_secs(120);
/// Executions a guest must have run to pass on time alone.
pub const MIN_RUNS: u32 = 20;
/// Faults that trip the guard (with at least one run in five failing).
pub const MIN_FAULTS: u32 = 5;

struct Watch {
    digest: String,
    fallback: Arc<Guest>,
    first_run: Option<Instant>,
    runs: u32,
    faults: u32,
}

/// What tripped the guard.
pub struct Tripped {
    pub digest: String,
    /// The guest to go back to.
    pub fallback: Arc<Guest>,
    pub runs: u32,
    pub faults: u32,
}

#[derive(Default)]
pub struct Canary {
    /// Set while a guest is on probation: the request path locks nothing otherwise.
    active: AtomicBool,
    watch: Mutex<Option<Watch>>,
    refused: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Canary {
    /// Puts the guest `digest` (being swapped in) on probation. `current`
    /// is the guest it replaces; if that one is itself still on probation,
    /// the fallback stays the last guest that passed.
    pub fn watch(&self, digest: String, current: Arc<Guest>) {
        let mut slot = lock(&self.watch);
        let fallback = slot.take().map_or(current, |w| w.fallback);
        *slot = Some(Watch { digest, fallback, first_run: None, runs: 0, faults: 0 });
        self.active.store(true, Ordering::Release);
    }

    /// Counts one execution of guest `digest`; `Some` when it tripped the
    /// guard (the digest is then refused).
    pub fn record(&self, digest: &str, fault: bool) -> Option<Tripped> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = lock(&self.watch);
        let watch = slot.as_mut()?;
        if watch.digest != digest {
            return None;
        }
        let first_run = *watch.first_run.get_or_insert_with(Instant::now);
        watch.runs += 1;
        watch.faults += u32::from(fault);
        if watch.faults >= MIN_FAULTS && watch.faults.saturating_mul(5) >= watch.runs {
            let w = slot.take()?;
            self.active.store(false, Ordering::Release);
            lock(&self.refused).insert(w.digest.clone());
            return Some(Tripped { digest: w.digest, fallback: w.fallback, runs: w.runs, faults: w.faults });
        }
        if watch.runs >= WINDOW_RUNS || (watch.runs >= MIN_RUNS && first_run.elapsed() >= WINDOW) {
            tracing::info!(digest = %watch.digest, runs = watch.runs, faults = watch.faults, "new guest passed its probation");
            *slot = None;
            self.active.store(false, Ordering::Release);
        }
        None
    }

    /// Whether guest `digest` failed its probation on this host.
    pub fn refused(&self, digest: &str) -> bool {
        lock(&self.refused).contains(digest)
    }
}
