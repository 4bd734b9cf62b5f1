//! A new guest's probation: for its first [`WINDOW_RUNS`] executions (or
//! [`WINDOW`], whichever ends first) the host counts the executions the
//! interpreter itself failed (a trap, an ABI fault: outcomes `guest_crash`
//! and `internal`, never a script's own errors or limits). If at least
//! [`MIN_FAULTS`] of them failed and they are at least a fifth of the runs,
//! the host goes back to what it ran before, refuses that module from then
//! on (until a catalog pins another), and reports it like any refusal:
//! the log, `/health` (`brain.last_refusal`), and
//! `avap_catalog_refusals_total{reason="canary"}`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::Live;

/// Executions a new guest is watched for.
pub const WINDOW_RUNS: u32 = 200;
/// How long a new guest is watched at most.
pub const WINDOW: Duration = Duration::from_secs(120);
/// Faults that trip the guard (with at least one run in five failing).
pub const MIN_FAULTS: u32 = 5;

struct Watch {
    digest: String,
    previous: Arc<Live>,
    started: Instant,
    runs: u32,
    faults: u32,
}

/// What tripped the guard.
pub struct Tripped {
    pub digest: String,
    pub previous: Arc<Live>,
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
    /// Puts the guest `digest` (just swapped in) on probation; `previous`
    /// is what to go back to.
    pub fn watch(&self, digest: String, previous: Arc<Live>) {
        *lock(&self.watch) = Some(Watch { digest, previous, started: Instant::now(), runs: 0, faults: 0 });
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
        watch.runs += 1;
        watch.faults += u32::from(fault);
        if watch.faults >= MIN_FAULTS && watch.faults.saturating_mul(5) >= watch.runs {
            let w = slot.take()?;
            self.active.store(false, Ordering::Release);
            lock(&self.refused).insert(w.digest.clone());
            return Some(Tripped { digest: w.digest, previous: w.previous, runs: w.runs, faults: w.faults });
        }
        if watch.runs >= WINDOW_RUNS || watch.started.elapsed() >= WINDOW {
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
