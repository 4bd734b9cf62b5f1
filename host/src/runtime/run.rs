//! One execution: a store and an instance for its length, the guest's
//! exports called through typed functions, its failures typed by trap code.

use super::*;

/// One live instance with its store, for the length of one execution.
pub(super) struct Run {
    pub(super) store: Store<StoreState>,
    pub(super) instance: wasmtime::Instance,
    pub(super) memory: Memory,
    pub(super) memory_hit: Arc<AtomicBool>,
    pub(super) limits: Limits,
}

impl Run {
    pub(super) async fn start(engine: &SandboxEngine, guest: &Guest, limits: &Limits) -> Result<Run, SandboxError> {
        // Stdio into capped buffers; the WASI functions reach nothing else.
        let stdio = wasi::Stdio::new(limits.max_stdio_bytes);
        let memory_hit = Arc::new(AtomicBool::new(false));
        let limiter = MemoryLimiter { max_bytes: limits.max_memory_bytes, hit: memory_hit.clone() };
        let deadline = Instant::now() + limits.timeout;
        let caps = CapState::new(engine.capabilities.clone(), deadline);
        let mut store = Store::new(&engine.engine, StoreState { memory: None, stdio, limiter, caps });
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(|e| SandboxError::Internal(e.into()))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        let instance = guest.pre.instantiate_async(&mut store).await.map_err(|e| classify(e, &memory_hit, limits))?;
        let memory = instance
            .get_module_export(&mut store, &guest.exports.memory)
            .and_then(|e| e.into_memory())
            .ok_or_else(|| SandboxError::GuestAbi("no exported memory".into()))?;
        store.data_mut().memory = Some(memory);
        let mut run = Run { store, instance, memory, memory_hit, limits: limits.clone() };
        // A snapshot has no `_initialize` any more: it ran before the snapshot.
        if let Some(init) = &guest.exports.initialize {
            let init: TypedFunc<(), ()> = run.export_func(init, export::INITIALIZE.name)?;
            finish(&run.memory_hit, &run.limits, init.call_async(&mut run.store, ())).await?;
        }
        Ok(run)
    }

    /// An export looked up once per module ([`Exports`]), typed.
    pub(super) fn export_func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        export: &wasmtime::ModuleExport,
        name: &str,
    ) -> Result<TypedFunc<P, R>, SandboxError> {
        let func = self
            .instance
            .get_module_export(&mut self.store, export)
            .and_then(|e| e.into_func())
            .ok_or_else(|| SandboxError::GuestAbi(format!("export `{name}` is not a function")))?;
        func.typed::<P, R>(&self.store).map_err(|e| SandboxError::GuestAbi(format!("export `{name}`: {e}")))
    }

    pub(super) fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, SandboxError> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| SandboxError::GuestAbi(format!("export `{name}`: {e}")))
    }

    /// Copies `(ptr << 32) | len` out of guest memory, after checking the
    /// length against `limit` and the range against the memory's size.
    pub(super) fn read(&self, packed: i64, limit: usize) -> Result<Vec<u8>, SandboxError> {
        let (ptr, len) = abi::unpack_ptr_len(packed);
        if len > limit {
            return Err(SandboxError::OutputTooLarge { size: len, limit });
        }
        let data = self.memory.data(&self.store);
        let end = ptr.checked_add(len).filter(|end| *end <= data.len()).ok_or_else(|| {
            SandboxError::GuestAbi(format!(
                "returned range {ptr}+{len} lies outside its memory of {} bytes",
                data.len()
            ))
        })?;
        Ok(data[ptr..end].to_vec())
    }
}

/// Awaits a guest call and types its failure.
pub(super) async fn finish<R>(
    memory_hit: &AtomicBool,
    limits: &Limits,
    call: impl Future<Output = wasmtime::Result<R>>,
) -> Result<R, SandboxError> {
    call.await.map_err(|e| classify(e, memory_hit, limits))
}

/// Turns a wasmtime error into a typed outcome by its trap code.
fn classify(err: wasmtime::Error, memory_hit: &AtomicBool, limits: &Limits) -> SandboxError {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::OutOfFuel(limits.fuel),
        Some(Trap::Interrupt) => SandboxError::Timeout(limits.timeout),
        Some(Trap::StackOverflow) => SandboxError::StackOverflow,
        _ if memory_hit.load(Ordering::Relaxed) => SandboxError::MemoryLimit(limits.max_memory_bytes),
        Some(trap) => SandboxError::GuestCrash(trap.to_string()),
        None => {
            if let Some(abi) = err.downcast_ref::<CapabilityAbiError>() {
                SandboxError::GuestAbi(abi.to_string())
            } else if let Some(exit) = err.downcast_ref::<wasi::GuestExit>() {
                SandboxError::GuestCrash(exit.to_string())
            } else {
                SandboxError::GuestCrash(format!("{err:#}"))
            }
        }
    }
}
