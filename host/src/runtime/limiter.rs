//! What each store holds besides the instance: its memory once instantiated,
//! standard output and error ([`super::wasi`]), the memory limiter, the
//! capability state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::ResourceLimiter;

use crate::capability::CapState;

/// Per-store state: the guest's memory (set once instantiated, for the WASI
/// functions), its standard output and error, the memory limiter and the
/// capability state.
pub(super) struct StoreState {
    pub(super) memory: Option<wasmtime::Memory>,
    pub(super) stdio: super::wasi::Stdio,
    pub(super) limiter: MemoryLimiter,
    pub(super) caps: CapState,
}

pub(super) fn cap_state(s: &mut StoreState) -> &mut CapState {
    &mut s.caps
}

/// Caps the guest to one linear memory of at most `max_bytes`, and records
/// that a growth was refused so a later trap can be reported as a memory
/// limit rather than a crash.
pub(super) struct MemoryLimiter {
    pub(super) max_bytes: usize,
    pub(super) hit: Arc<AtomicBool>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}
