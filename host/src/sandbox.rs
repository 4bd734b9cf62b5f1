//! The sandbox: one `Engine` and one `InstancePre` for the process, a fresh
//! `Store` and instance for every execution, dropped afterwards.
//!
//! Every store gets, before the guest runs a single instruction:
//! - a memory limiter (one linear memory, capped at `max_memory_bytes`),
//! - a fuel budget (a deterministic CPU budget; host calls burn none),
//! - an epoch deadline (a wall-clock budget; the ticker thread advances the
//!   epoch every [`EPOCH_TICK`], and at each tick the guest yields to tokio so
//!   one long script cannot starve the others),
//! - a WASI context that grants nothing, with stdout/stderr in capped pipes.
//!
//! Instances come from the pooling allocator with copy-on-write memory images,
//! so a fresh instance costs microseconds. A semaphore in front of
//! instantiation is sized below the pool, and a request that cannot get a
//! slot within `queue_timeout` is turned away (`SandboxError::Busy`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::abi::{self, AbiError};
use crate::capability::{self, CapState, Capabilities, CapabilityAbiError};

/// How often the epoch advances. Deadlines are precise to about one tick,
/// and a running guest yields to the async runtime once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Extra wall-clock time allowed beyond the deadline for the host-side
/// timeout that also covers time spent outside wasm (instantiation, host
/// calls). Epoch interruption stops guest code; this stops everything else.
const HOST_TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// Per-execution caps. Every field can be set from the command line or the
/// environment (see `config.rs`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Limits {
    /// Cap on the guest's linear memory, in bytes.
    pub max_memory_bytes: usize,
    /// Fuel per execution (roughly one unit per wasm instruction).
    pub fuel: u64,
    /// Wall-clock deadline per execution.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
    /// Largest input document the host will hand to the guest, in bytes.
    pub max_input_bytes: usize,
    /// Largest output document the host will read back, in bytes.
    pub max_output_bytes: usize,
    /// Capacity of each of the guest's stdout and stderr pipes, in bytes.
    pub max_stdio_bytes: usize,
    /// Executions that may run at once (pool slots in use).
    pub max_concurrency: u32,
    /// How long a request may wait for a free slot before it is refused.
    #[serde(rename = "queue_timeout_ms", serialize_with = "ser_ms")]
    pub queue_timeout: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            fuel: 2_000_000_000,
            timeout: Duration::from_secs(1),
            max_input_bytes: 2 << 20,
            max_output_bytes: 8 << 20,
            max_stdio_bytes: 64 << 10,
            max_concurrency: 32,
            queue_timeout: Duration::from_millis(200),
        }
    }
}

/// Why an execution did not produce an output document. Each variant is a
/// typed outcome; nothing here is found by matching strings.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no execution slot became free within {0:?}")]
    Busy(Duration),
    #[error("execution exceeded its wall-clock deadline of {0:?}")]
    Timeout(Duration),
    #[error("execution ran out of fuel (CPU budget of {0} units)")]
    OutOfFuel(u64),
    #[error("execution exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("guest exhausted its stack")]
    StackOverflow,
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge { size: usize, limit: usize },
    #[error("guest output of {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("guest crashed: {0}")]
    GuestCrash(String),
    #[error("guest broke the ABI: {0}")]
    GuestAbi(String),
    #[error("internal sandbox error: {0:#}")]
    Internal(anyhow::Error),
}

/// What a finished execution hands back: the guest's output document and
/// whatever it wrote to stdout/stderr (capped).
#[derive(Debug)]
pub struct Execution {
    pub output: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fuel_used: u64,
    pub duration: Duration,
}

/// `sha256:<hex>` of a module's bytes: how guests are identified.
pub fn module_digest(wasm: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(wasm)))
}

/// Identity of a loaded guest module, shown in `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestInfo {
    /// The version the guest reports through `avap_guest_version`.
    pub version: String,
    /// `sha256:<hex>` of the module bytes.
    pub digest: String,
    /// Where it came from (`built-in`, or a catalog source).
    pub source: String,
    pub abi_version: i32,
    pub size_bytes: usize,
    /// How long compiling and probing the module took.
    pub load_ms: u64,
    /// For a prepared guest: the snapshot's size and how long it took to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
}

/// How a prepared guest was made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotInfo {
    pub size_bytes: usize,
    pub build_ms: u64,
    /// Catalog commands written in AVAP the snapshot holds, parsed.
    pub functions: u64,
}

/// Per-store state: the WASI context, the memory limiter and the
/// capability state.
struct StoreState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    caps: CapState,
}

fn cap_state(s: &mut StoreState) -> &mut CapState {
    &mut s.caps
}

/// Caps the guest to one linear memory of at most `max_bytes`, and records
/// that a growth was refused so a later trap can be reported as a memory
/// limit rather than a crash.
struct MemoryLimiter {
    max_bytes: usize,
    hit: Arc<AtomicBool>,
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

/// The loaded guest: a compiled module with its imports resolved once.
///
/// A guest loaded from a module ([`SandboxEngine::load_guest`]) is compiled
/// in the form the snapshot tool instruments (its globals and memory also
/// exported; it behaves the same), so it can later be prepared without a
/// second compile of the original. A prepared guest
/// ([`SandboxEngine::prepare`]) is a snapshot: the same code, its memory
/// and globals as they were after `_initialize` and `avap_prepare` with the
/// live catalog. Every execution of it starts from that image, copy on
/// write, and its input carries no catalog.
pub struct Guest {
    pre: InstancePre<StoreState>,
    exports: Exports,
    info: GuestInfo,
    /// The module's bytes as given (the snapshot is made from them).
    wasm: Arc<[u8]>,
    /// Whether `pre` is the instrumented module (and so can be prepared).
    instrumented: bool,
    /// Whether this guest is a snapshot holding the live catalog.
    prepared: bool,
}

/// The exports every execution uses, looked up once per module rather than
/// by name in every instance.
struct Exports {
    alloc: wasmtime::ModuleExport,
    run: wasmtime::ModuleExport,
    memory: wasmtime::ModuleExport,
    initialize: Option<wasmtime::ModuleExport>,
}

impl Exports {
    /// For a module that passed [`abi::check_module`].
    fn of(module: &Module) -> Result<Exports, AbiError> {
        let get = |name: &'static str| module.get_export_index(name).ok_or(AbiError::MissingExport(name));
        Ok(Exports {
            alloc: get(abi::EXPORT_ALLOC)?,
            run: get(abi::EXPORT_RUN)?,
            memory: get(abi::EXPORT_MEMORY)?,
            initialize: module.get_export_index(abi::EXPORT_INITIALIZE),
        })
    }
}

impl Guest {
    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    /// Whether executions of this guest find the catalog already in it
    /// (their input must not carry one).
    pub fn is_prepared(&self) -> bool {
        self.prepared
    }
}

/// The process-wide engine, shared by every sandbox built from it. Building
/// an engine reserves the pool's address space, so build one and share it.
#[derive(Clone)]
pub struct SandboxEngine {
    engine: Engine,
    linker: Arc<Linker<StoreState>>,
    pool_slots: u32,
    max_memory_bytes: usize,
    capabilities: Arc<Capabilities>,
}

impl SandboxEngine {
    /// An engine whose executions are granted no capability.
    pub fn new(limits: &Limits) -> anyhow::Result<Self> {
        Self::with_capabilities(limits, Capabilities::none())
    }

    /// Builds the engine for executions within `limits`, granted
    /// `capabilities`, and starts the epoch ticker (a thread that stops once
    /// the engine is dropped).
    pub fn with_capabilities(limits: &Limits, capabilities: Arc<Capabilities>) -> anyhow::Result<Self> {
        // Two slots beyond the concurrency gate: one for the start-up probe
        // and self-test of a module, one spare.
        let pool_slots = limits.max_concurrency.saturating_add(2);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(pool_slots)
            .total_memories(pool_slots)
            .total_tables(pool_slots)
            .total_stacks(pool_slots)
            .max_memory_size(limits.max_memory_bytes)
            // A slot is reset for its next execution without `madvise` (and
            // the TLB shootdowns it costs on every core): the pages of memory
            // an execution dirtied (found with PAGEMAP_SCAN on Linux 6.7+)
            // are rewritten from the image, and the whole function table is
            // cleared with `memset`. Measured in docs/PERFORMANCE.md: with
            // the table decommitted instead, every execution paid one
            // `madvise` and two page faults, each flushing the TLB of both
            // cores.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        // A prepared guest is the same code with other data: with this cache
        // its compile reuses the functions compiled when the guest was loaded.
        config
            .enable_incremental_compilation(Arc::new(CompileCache::default()))
            .map_err(anyhow::Error::from)
            .context("the compile cache")?;
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            // Lazy table initialisation measured cheaper than eager (the
            // guest's table has thousands of entries; a script calls few).
            .table_lazy_init(true)
            .profiler(profiler())
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20);
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("building the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut StoreState| &mut s.wasi)
            .map_err(anyhow::Error::from)
            .context("linking WASI preview 1")?;
        link_capabilities(&mut linker).map_err(anyhow::Error::from).context("linking the capability imports")?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("avap-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;

        Ok(SandboxEngine {
            engine,
            linker: Arc::new(linker),
            pool_slots,
            max_memory_bytes: limits.max_memory_bytes,
            capabilities,
        })
    }

    /// What executions on this engine are granted.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and vets a guest module: imports against the allow-list,
    /// exports against the ABI, then a probe instance that must report the
    /// right ABI version and a version string. A binary module is compiled
    /// as the snapshot tool instruments it, so that [`Self::prepare`] needs no
    /// second compile of it; one the tool cannot read runs as it is.
    pub async fn load_guest(&self, wasm: &[u8], source: &str) -> Result<Guest, LoadError> {
        let started = Instant::now();
        // Compiling takes a CPU for a while: keep it off the async workers.
        let (engine, bytes) = (self.engine.clone(), wasm.to_vec());
        let (module, instrumented) = tokio::task::spawn_blocking(move || {
            let instrumented = wasmtime_wizer::Wizer::new().instrument(&bytes).ok().map(|(_, wasm)| wasm);
            let module = Module::new(&engine, instrumented.as_deref().unwrap_or(&bytes));
            module.map(|m| (m, instrumented.is_some()))
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compiler task failed: {e}")))?
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        abi::check_module(&module)?;
        let exports = Exports::of(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let mut guest = Guest {
            pre,
            exports,
            info: GuestInfo {
                version: String::new(),
                digest: module_digest(wasm),
                source: source.to_string(),
                abi_version: 0,
                size_bytes: wasm.len(),
                load_ms: 0,
                snapshot: None,
            },
            wasm: wasm.into(),
            instrumented,
            prepared: false,
        };
        let (abi_version, version) = self.probe(&guest).await.map_err(|e| LoadError::Probe(e.to_string()))?;
        if abi_version != abi::ABI_VERSION {
            return Err(AbiError::AbiVersion { found: abi_version, expected: abi::ABI_VERSION }.into());
        }
        guest.info.abi_version = abi_version;
        guest.info.version = version;
        guest.info.load_ms = started.elapsed().as_millis() as u64;
        Ok(guest)
    }

    /// Makes the prepared guest of `base` for a catalog: an instance of it
    /// runs `_initialize` and `avap_prepare(prepare_doc)` (the catalog parsed,
    /// its commands compiled to trees, the allocator warm), and its memory
    /// and globals become the initial state of a new module. Off the request
    /// path; within `limits` (memory, fuel, deadline) like any execution.
    /// `Ok(None)`: the guest cannot be prepared (no `avap_prepare`, or a module
    /// the snapshot tool cannot read); it then runs as it is, the catalog in
    /// each input.
    pub async fn prepare(
        &self,
        base: &Guest,
        prepare_doc: &[u8],
        limits: &Limits,
    ) -> Result<Option<Prepared>, LoadError> {
        if !base.instrumented || base.pre.module().get_export(abi::EXPORT_PREPARE).is_none() {
            return Ok(None);
        }
        let started = Instant::now();
        let fail = |what: &str, e: &dyn std::fmt::Display| LoadError::Prepare(format!("{what}: {e}"));
        let mut run = Run::start(self, base, limits).await.map_err(|e| fail("instantiating", &e))?;
        let alloc: TypedFunc<i32, i32> = run.func(abi::EXPORT_ALLOC).map_err(|e| fail("alloc", &e))?;
        let prepare: TypedFunc<(i32, i32), i64> = run.func(abi::EXPORT_PREPARE).map_err(|e| fail("prepare", &e))?;
        let len = i32::try_from(prepare_doc.len()).map_err(|_| fail("the catalog", &"too large"))?;
        let ptr = finish(&run.memory_hit, &run.limits, alloc.call_async(&mut run.store, len))
            .await
            .map_err(|e| fail("avap_alloc", &e))?;
        run.memory
            .write(&mut run.store, ptr as u32 as usize, prepare_doc)
            .map_err(|_| fail("avap_alloc", &"a buffer outside guest memory"))?;
        let packed = finish(&run.memory_hit, &run.limits, prepare.call_async(&mut run.store, (ptr, len)))
            .await
            .map_err(|e| fail("avap_prepare", &e))?;
        let answer = run.read(packed, limits.max_output_bytes).map_err(|e| fail("avap_prepare", &e))?;
        let answer: PrepareAnswer<'_> =
            serde_json::from_slice(&answer).map_err(|e| fail("avap_prepare answered", &e))?;
        if !answer.ok {
            return Err(LoadError::Prepare(format!(
                "avap_prepare refused the catalog: {}",
                guest_text(answer.error.unwrap_or("no reason given"))
            )));
        }
        let prepared_at = started.elapsed();
        // The snapshot: the instance's globals and memory as they are now.
        let wasm = base.wasm.clone();
        let wizer = wasmtime_wizer::Wizer::new();
        let (cx, _) = wizer.instrument(&wasm).map_err(|e| fail("instrumenting", &e))?;
        let snapshot = wizer
            .snapshot(&cx, &mut SnapshotState { store: &mut run.store, instance: run.instance })
            .await
            .map_err(|e| fail("snapshot", &e))?;
        drop(run);
        let snapshot_at = started.elapsed();
        let size = snapshot.len();
        let engine = self.engine.clone();
        let module = tokio::task::spawn_blocking(move || Module::new(&engine, snapshot))
            .await
            .map_err(|e| fail("compiler task", &e))?
            .map_err(|e| fail("compiling the snapshot", &e))?;
        tracing::debug!(
            prepare_ms = prepared_at.as_millis() as u64,
            snapshot_ms = (snapshot_at - prepared_at).as_millis() as u64,
            compile_ms = (started.elapsed() - snapshot_at).as_millis() as u64,
            "guest prepared"
        );
        abi::check_module(&module)?;
        let exports = Exports::of(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let mut info = base.info.clone();
        info.snapshot = Some(SnapshotInfo {
            size_bytes: size,
            build_ms: started.elapsed().as_millis() as u64,
            functions: answer.functions.unwrap_or(0),
        });
        // What the guest says goes to /health and the log: bounded.
        let catalog_errors = answer
            .catalog_errors
            .into_iter()
            .take(MAX_CATALOG_ERRORS)
            .map(|e| (guest_text(&e.name), guest_text(&e.error)))
            .collect();
        Ok(Some(Prepared {
            guest: Guest { pre, exports, info, wasm: base.wasm.clone(), instrumented: false, prepared: true },
            catalog_errors,
        }))
    }

    /// Reads `avap_abi_version` and `avap_guest_version` from a throwaway instance.
    async fn probe(&self, guest: &Guest) -> Result<(i32, String), SandboxError> {
        let limits = Limits { max_memory_bytes: self.max_memory_bytes, ..Limits::default() };
        let mut run = Run::start(self, guest, &limits).await?;
        let abi_version: TypedFunc<(), i32> = run.func(abi::EXPORT_ABI_VERSION)?;
        let abi_version = finish(&run.memory_hit, &run.limits, abi_version.call_async(&mut run.store, ())).await?;
        let version_fn: TypedFunc<(), i64> = run.func(abi::EXPORT_GUEST_VERSION)?;
        let packed = finish(&run.memory_hit, &run.limits, version_fn.call_async(&mut run.store, ())).await?;
        let bytes = run.read(packed, 64)?;
        let version = String::from_utf8(bytes)
            .ok()
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)))
            .ok_or_else(|| SandboxError::GuestAbi("version string is not printable ASCII semver".into()))?;
        Ok((abi_version, version))
    }

    /// Runs one execution of `input` (the guest's JSON input document) in a
    /// fresh instance of `guest`, within `limits`. The caller holds a slot of
    /// the concurrency gate.
    pub async fn execute(&self, guest: &Guest, limits: &Limits, input: &[u8]) -> Result<Execution, SandboxError> {
        if input.len() > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { size: input.len(), limit: limits.max_input_bytes });
        }
        let started = Instant::now();
        let work = async {
            let mut run = Run::start(self, guest, limits).await?;
            let alloc: TypedFunc<i32, i32> = run.export_func(&guest.exports.alloc, abi::EXPORT_ALLOC)?;
            let run_fn: TypedFunc<(i32, i32), i64> = run.export_func(&guest.exports.run, abi::EXPORT_RUN)?;
            let len = i32::try_from(input.len())
                .map_err(|_| SandboxError::InputTooLarge { size: input.len(), limit: limits.max_input_bytes })?;
            let ptr = finish(&run.memory_hit, &run.limits, alloc.call_async(&mut run.store, len)).await?;
            if ptr == 0 && len != 0 {
                return Err(SandboxError::GuestAbi("avap_alloc could not allocate the input buffer".into()));
            }
            run.memory
                .write(&mut run.store, ptr as u32 as usize, input)
                .map_err(|_| SandboxError::GuestAbi("avap_alloc returned a buffer outside guest memory".into()))?;
            let packed = finish(&run.memory_hit, &run.limits, run_fn.call_async(&mut run.store, (ptr, len))).await?;
            let output = run.read(packed, limits.max_output_bytes)?;
            let fuel_used = limits.fuel.saturating_sub(run.store.get_fuel().unwrap_or(0));
            Ok((output, fuel_used, run))
        };
        // Epoch interruption stops guest code at the deadline; this timeout
        // also bounds instantiation and any time spent in host calls.
        let (output, fuel_used, run) = match tokio::time::timeout(limits.timeout + HOST_TIMEOUT_GRACE, work).await {
            Ok(result) => result?,
            Err(_) => return Err(SandboxError::Timeout(limits.timeout)),
        };
        Ok(Execution {
            output,
            stdout: run.stdout.contents().to_vec(),
            stderr: run.stderr.contents().to_vec(),
            fuel_used,
            duration: started.elapsed(),
        })
    }

    /// The number of instance slots in the pool.
    pub fn pool_slots(&self) -> u32 {
        self.pool_slots
    }
}

/// Bytes of each linear memory reset with `memset` rather than `madvise`
/// when its slot is reused: what a typical execution dirties beyond the
/// snapshot's image.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of each table kept resident: the guest's whole function table
/// (a few thousand 8-byte entries) with room to spare.
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// `AVAP_PERF_MAP=1` writes `/tmp/perf-PID.map` so `perf report` names
/// JIT-compiled guest functions (a developer's tool; it names code
/// addresses only, nothing of any execution).
fn profiler() -> wasmtime::ProfilingStrategy {
    match std::env::var("AVAP_PERF_MAP").as_deref() {
        Ok("1" | "true") => wasmtime::ProfilingStrategy::PerfMap,
        _ => wasmtime::ProfilingStrategy::None,
    }
}

/// Cranelift's incremental cache, in memory: compiled functions by the hash
/// of what was compiled. Filled by this process only (nothing outside it
/// can put an entry in); emptied when it grows past [`COMPILE_CACHE_BYTES`].
#[derive(Debug, Default)]
struct CompileCache {
    entries: std::sync::Mutex<CacheEntries>,
}

#[derive(Debug, Default)]
struct CacheEntries {
    by_key: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

/// The most the compile cache holds (a guest's code a few times over).
const COMPILE_CACHE_BYTES: usize = 256 << 20;

impl wasmtime::CacheStore for CompileCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let entries = self.entries.lock().ok()?;
        entries.by_key.get(key).map(|v| std::borrow::Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(mut entries) = self.entries.lock() else { return false };
        let size = key.len() + value.len();
        if entries.bytes + size > COMPILE_CACHE_BYTES {
            entries.by_key.clear();
            entries.bytes = 0;
        }
        entries.bytes += size;
        entries.by_key.insert(key.to_vec(), value);
        true
    }
}

/// Why a guest module was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("module does not compile: {0}")]
    Compile(String),
    #[error(transparent)]
    Abi(#[from] AbiError),
    #[error("module failed its probe: {0}")]
    Probe(String),
    #[error("module could not be prepared with the catalog: {0}")]
    Prepare(String),
}

/// The most catalog errors kept from one `avap_prepare` answer.
const MAX_CATALOG_ERRORS: usize = 20;

/// The longest text kept from what a guest reports about itself.
const MAX_GUEST_TEXT_BYTES: usize = 512;

/// `text` cut to [`MAX_GUEST_TEXT_BYTES`] at a character boundary.
fn guest_text(text: &str) -> String {
    let mut cut = text.len().min(MAX_GUEST_TEXT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < text.len() { format!("{} ...", &text[..cut]) } else { text.to_string() }
}

/// What `avap_prepare` answers (untrusted; only read, never kept).
#[derive(serde::Deserialize)]
struct PrepareAnswer<'a> {
    ok: bool,
    #[serde(default)]
    functions: Option<u64>,
    #[serde(default, borrow)]
    error: Option<&'a str>,
    #[serde(default)]
    catalog_errors: Vec<NamedError>,
}

#[derive(serde::Deserialize)]
struct NamedError {
    name: String,
    error: String,
}

/// A prepared guest, and the catalog commands it found invalid (by name,
/// with why).
pub struct Prepared {
    pub guest: Guest,
    pub catalog_errors: Vec<(String, String)>,
}

/// The instance state the snapshot reads: its globals and memory by the
/// names the instrumented module exports them under.
struct SnapshotState<'a> {
    store: &'a mut Store<StoreState>,
    instance: wasmtime::Instance,
}

impl wasmtime_wizer::InstanceState for SnapshotState<'_> {
    async fn global_get(&mut self, name: &str, _: wasmtime_wizer::ValType) -> wasmtime_wizer::SnapshotVal {
        use wasmtime_wizer::SnapshotVal;
        match self.instance.get_global(&mut *self.store, name).map(|g| g.get(&mut *self.store)) {
            Some(wasmtime::Val::I32(x)) => SnapshotVal::I32(x),
            Some(wasmtime::Val::I64(x)) => SnapshotVal::I64(x),
            Some(wasmtime::Val::F32(x)) => SnapshotVal::F32(x),
            Some(wasmtime::Val::F64(x)) => SnapshotVal::F64(x),
            Some(wasmtime::Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            // The instrumented module exports every defined global of a
            // value type; anything else keeps its initial value of zero.
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => contents(&[]),
        }
    }
}

/// One live instance with its store, for the length of one execution.
struct Run {
    store: Store<StoreState>,
    instance: wasmtime::Instance,
    memory: Memory,
    memory_hit: Arc<AtomicBool>,
    limits: Limits,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Run {
    async fn start(engine: &SandboxEngine, guest: &Guest, limits: &Limits) -> Result<Run, SandboxError> {
        let stdout = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let stderr = MemoryOutputPipe::new(limits.max_stdio_bytes);
        // Grants nothing: no args, no env, no preopens, stdin closed.
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build_p1();
        let memory_hit = Arc::new(AtomicBool::new(false));
        let limiter = MemoryLimiter { max_bytes: limits.max_memory_bytes, hit: memory_hit.clone() };
        let deadline = Instant::now() + limits.timeout;
        let caps = CapState::new(engine.capabilities.clone(), deadline);
        let mut store = Store::new(&engine.engine, StoreState { wasi, limiter, caps });
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
        let mut run = Run { store, instance, memory, memory_hit, limits: limits.clone(), stdout, stderr };
        // A snapshot has no `_initialize` any more: it ran before the snapshot.
        if let Some(init) = &guest.exports.initialize {
            let init: TypedFunc<(), ()> = run.export_func(init, abi::EXPORT_INITIALIZE)?;
            finish(&run.memory_hit, &run.limits, init.call_async(&mut run.store, ())).await?;
        }
        Ok(run)
    }

    /// An export looked up once per module ([`Exports`]), typed.
    fn export_func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
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

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, SandboxError> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| SandboxError::GuestAbi(format!("export `{name}`: {e}")))
    }

    /// Copies `(ptr << 32) | len` out of guest memory, after checking the
    /// length against `limit` and the range against the memory's size.
    fn read(&self, packed: i64, limit: usize) -> Result<Vec<u8>, SandboxError> {
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

/// Links the `avap` capability imports (see [`crate::capability`]).
fn link_capabilities(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use capability::Kind;
    linker.func_wrap_async(capability::IMPORT_MODULE, "http_request", |mut caller, (ptr, len): (i32, i32)| {
        Box::new(async move { capability::call(&mut caller, cap_state, Kind::Http, ptr, len).await })
    })?;
    linker.func_wrap_async(capability::IMPORT_MODULE, "db_query", |mut caller, (ptr, len): (i32, i32)| {
        Box::new(async move { capability::call(&mut caller, cap_state, Kind::Db, ptr, len).await })
    })?;
    linker.func_wrap(
        capability::IMPORT_MODULE,
        "reply_read",
        |mut caller: wasmtime::Caller<'_, StoreState>, ptr: i32, len: i32| {
            capability::reply_read(&mut caller, cap_state, ptr, len)
        },
    )?;
    Ok(())
}

/// Awaits a guest call and types its failure.
async fn finish<R>(
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
            } else if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                SandboxError::GuestCrash(format!("guest exited with status {}", exit.0))
            } else {
                SandboxError::GuestCrash(format!("{err:#}"))
            }
        }
    }
}

/// The concurrency gate in front of instantiation.
#[derive(Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Gate {
    pub fn new(slots: u32, queue_timeout: Duration) -> Self {
        Gate { slots: Arc::new(Semaphore::new(slots as usize)), queue_timeout }
    }

    /// Waits up to the queueing deadline for a slot.
    pub async fn enter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SandboxError> {
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(SandboxError::Busy(self.queue_timeout)),
        }
    }
}

/// Containment tests with tiny WAT guests, one per way an execution can end.
#[cfg(test)]
mod tests {
    use super::*;

    /// A guest that keeps to the ABI; `run` is the body of `avap_run`, which
    /// must leave an i64 on the stack. Memory: 1 page, version string at 0.
    fn wat_guest(run: &str, extra: &str) -> String {
        format!(
            r#"(module
              (memory (export "memory") 1)
              (data (i32.const 0) "9.9.9")
              (data (i32.const 16) "{{\"ok\":true}}")
              (func (export "avap_abi_version") (result i32) i32.const 1)
              (func (export "avap_guest_version") (result i64) i64.const 5)
              (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
              (func (export "avap_run") (param i32 i32) (result i64) {run})
              {extra})"#
        )
    }

    /// Returns the 11-byte `{"ok":true}` at offset 16.
    const OK_OUTPUT: &str = "i64.const 0x100000000b";

    fn limits() -> Limits {
        Limits { max_concurrency: 4, fuel: 10_000_000, timeout: Duration::from_secs(5), ..Limits::default() }
    }

    async fn run(wat: &str, limits: &Limits) -> Result<Execution, SandboxError> {
        let engine = SandboxEngine::new(limits).expect("engine");
        let guest = engine.load_guest(wat.as_bytes(), "test").await.expect("load");
        engine.execute(&guest, limits, b"{}").await
    }

    #[tokio::test]
    async fn a_well_behaved_guest_returns_its_output() {
        let exec = run(&wat_guest(OK_OUTPUT, ""), &limits()).await.expect("ok");
        assert_eq!(exec.output, br#"{"ok":true}"#);
        assert!(exec.fuel_used > 0);
    }

    #[tokio::test]
    async fn load_reports_version_digest_and_abi() {
        let limits = limits();
        let engine = SandboxEngine::new(&limits).expect("engine");
        let wat = wat_guest(OK_OUTPUT, "");
        let guest = engine.load_guest(wat.as_bytes(), "test").await.expect("load");
        assert_eq!(guest.info().version, "9.9.9");
        assert_eq!(guest.info().abi_version, 1);
        assert_eq!(guest.info().digest, module_digest(wat.as_bytes()));
        assert_eq!(guest.info().digest.len(), "sha256:".len() + 64);
    }

    #[tokio::test]
    async fn infinite_loop_runs_out_of_fuel() {
        let err = run(&wat_guest("(loop br 0) i64.const 0", ""), &limits()).await.expect_err("must stop");
        assert!(matches!(err, SandboxError::OutOfFuel(10_000_000)), "{err:?}");
    }

    #[tokio::test]
    async fn infinite_loop_hits_the_deadline_when_fuel_is_plenty() {
        let limits = Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(20), ..limits() };
        let started = Instant::now();
        let err = run(&wat_guest("(loop br 0) i64.const 0", ""), &limits).await.expect_err("must stop");
        assert!(matches!(err, SandboxError::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn memory_growth_past_the_cap_is_a_memory_limit() {
        // Grow one page at a time until refused, then trap like a Rust guest
        // whose allocation failed.
        let body = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable";
        let limits = Limits { max_memory_bytes: 2 << 20, ..limits() };
        let err = run(&wat_guest(body, ""), &limits).await.expect_err("must stop");
        assert!(matches!(err, SandboxError::MemoryLimit(_)), "{err:?}");
    }

    #[tokio::test]
    async fn runaway_recursion_is_a_stack_overflow() {
        let extra = "(func $f (result i64) call $f)";
        let err = run(&wat_guest("call $f", extra), &limits()).await.expect_err("must stop");
        assert!(matches!(err, SandboxError::StackOverflow), "{err:?}");
    }

    #[tokio::test]
    async fn output_outside_memory_or_over_the_cap_is_refused() {
        let err = run(&wat_guest("i64.const 0xffff000000000010", ""), &limits()).await.expect_err("bad ptr");
        assert!(matches!(err, SandboxError::GuestAbi(_)), "{err:?}");
        let limits = Limits { max_output_bytes: 4, ..limits() };
        let err = run(&wat_guest(OK_OUTPUT, ""), &limits).await.expect_err("too big");
        assert!(matches!(err, SandboxError::OutputTooLarge { size: 11, limit: 4 }), "{err:?}");
    }

    #[tokio::test]
    async fn a_trap_is_a_guest_crash() {
        let err = run(&wat_guest("unreachable", ""), &limits()).await.expect_err("trap");
        assert!(matches!(err, SandboxError::GuestCrash(_)), "{err:?}");
    }

    #[tokio::test]
    async fn memory_written_by_one_execution_is_not_seen_by_the_next() {
        // Returns the 11-byte ok output if the word at 8192 is zero, then
        // writes a secret there; a shared memory would fail the second run.
        let body = "(if (i32.ne (i32.load (i32.const 8192)) (i32.const 0)) (then unreachable))
                    (i32.store (i32.const 8192) (i32.const 0x5ec2e7)) i64.const 0x100000000b";
        let limits = limits();
        let engine = SandboxEngine::new(&limits).expect("engine");
        let guest = engine.load_guest(wat_guest(body, "").as_bytes(), "test").await.expect("load");
        for _ in 0..20 {
            engine.execute(&guest, &limits, b"{}").await.expect("fresh memory every time");
        }
    }

    /// A guest with `avap_prepare` whose every run bumps a global and a
    /// word of the memory the snapshot holds, then grows the memory and
    /// reads the new page's last byte before writing it. It answers four
    /// digits: the global, the word, the page count before growing, and
    /// that byte. Prepared, the global and word are 7 and the memory three
    /// pages: every execution must answer "8830", however many ran before
    /// (and an unprepared one "1120").
    const STATEFUL_GUEST: &str = r#"(module
      (memory (export "memory") 2)
      (global $counter (mut i32) (i32.const 0))
      (data (i32.const 0) "9.9.9")
      (data (i32.const 16) "{\"ok\":true}")
      (func (export "avap_abi_version") (result i32) i32.const 1)
      (func (export "avap_guest_version") (result i64) i64.const 5)
      (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
      (func (export "avap_prepare") (param i32 i32) (result i64)
        (global.set $counter (i32.const 7))
        (drop (memory.grow (i32.const 1)))
        (i32.store (i32.const 65544) (i32.const 7))
        i64.const 0x100000000b)
      (func (export "avap_run") (param i32 i32) (result i64) (local $pages i32) (local $last i32)
        (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
        (i32.store (i32.const 65544) (i32.add (i32.load (i32.const 65544)) (i32.const 1)))
        (local.set $pages (memory.size))
        (drop (memory.grow (i32.const 64)))
        (local.set $last (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 8)))
        (i32.store8 (i32.const 64) (i32.add (i32.const 48) (global.get $counter)))
        (i32.store8 (i32.const 65) (i32.add (i32.const 48) (i32.load (i32.const 65544))))
        (i32.store8 (i32.const 66) (i32.add (i32.const 48) (local.get $pages)))
        (i32.store8 (i32.const 67) (i32.add (i32.const 48) (i32.load8_u (local.get $last))))
        (i32.store8 (local.get $last) (i32.const 9))
        i64.const 0x4000000004))"#;

    #[tokio::test]
    async fn a_snapshot_starts_every_execution_from_its_own_state() {
        let limits = Limits { max_concurrency: 2, ..limits() };
        let engine = SandboxEngine::new(&limits).expect("engine");
        let wasm = wat::parse_str(STATEFUL_GUEST).expect("wat");
        let base = engine.load_guest(&wasm, "test").await.expect("load");
        let prepared = engine.prepare(&base, b"{}", &limits).await.expect("prepare").expect("preparable");
        assert!(prepared.guest.is_prepared());
        assert!(prepared.guest.info().snapshot.is_some());
        // More executions than pool slots, so slots are reused; base and
        // snapshot interleaved, so a slot moves between the two modules.
        for round in 0..12 {
            let exec = engine.execute(&prepared.guest, &limits, b"{}").await.expect("snapshot run");
            assert_eq!(exec.output, b"8830", "round {round}: the snapshot's state, untouched by earlier runs");
            let exec = engine.execute(&base, &limits, b"{}").await.expect("base run");
            assert_eq!(exec.output, b"1120", "round {round}: the module's own initial state");
        }
        // Concurrent executions each see their own copy.
        let runs = (0..6).map(|_| engine.execute(&prepared.guest, &limits, b"{}"));
        for exec in futures_util::future::join_all(runs).await {
            assert_eq!(exec.expect("concurrent run").output, b"8830");
        }
    }

    #[tokio::test]
    async fn a_guest_without_prepare_or_in_text_form_runs_unprepared() {
        let limits = limits();
        let engine = SandboxEngine::new(&limits).expect("engine");
        let text = engine.load_guest(STATEFUL_GUEST.as_bytes(), "test").await.expect("load text");
        assert!(engine.prepare(&text, b"{}", &limits).await.expect("prepare").is_none());
        let wasm = wat::parse_str(wat_guest(OK_OUTPUT, "")).expect("wat");
        let plain = engine.load_guest(&wasm, "test").await.expect("load");
        assert!(engine.prepare(&plain, b"{}", &limits).await.expect("prepare").is_none());
    }

    #[test]
    fn what_a_guest_says_of_itself_is_bounded() {
        assert_eq!(guest_text("short"), "short");
        let long = "é".repeat(MAX_GUEST_TEXT_BYTES);
        let cut = guest_text(&long);
        assert!(cut.len() <= MAX_GUEST_TEXT_BYTES + 4 && cut.ends_with(" ..."), "{}", cut.len());
    }

    #[tokio::test]
    async fn a_refused_or_failing_prepare_is_a_load_error() {
        let limits = limits();
        let engine = SandboxEngine::new(&limits).expect("engine");
        let refusing = STATEFUL_GUEST
            .replace(
                r#"(data (i32.const 0) "9.9.9")"#,
                r#"(data (i32.const 0) "9.9.9") (data (i32.const 32) "{\"ok\":false}")"#,
            )
            .replace(
                "(i32.const 7))\n        i64.const 0x100000000b)",
                "(i32.const 7))\n        i64.const 0x200000000c)",
            );
        assert!(refusing.contains("0x200000000c") && refusing.contains("ok\\\":false"), "{refusing}");
        let guest = engine.load_guest(&wat::parse_str(&refusing).expect("wat"), "test").await.expect("load");
        let err = engine.prepare(&guest, b"{}", &limits).await.err().expect("refused");
        assert!(err.to_string().contains("refused the catalog"), "{err}");
        let trapping = STATEFUL_GUEST.replace("(global.set $counter (i32.const 7))", "unreachable");
        let guest = engine.load_guest(&wat::parse_str(&trapping).expect("wat"), "test").await.expect("load");
        let err = engine.prepare(&guest, b"{}", &limits).await.err().expect("trap");
        assert!(matches!(err, LoadError::Prepare(_)), "{err}");
    }

    #[tokio::test]
    async fn modules_off_the_abi_are_refused_at_load() {
        let limits = limits();
        let engine = SandboxEngine::new(&limits).expect("engine");
        let sneaky = wat_guest(OK_OUTPUT, "").replacen(
            "(module",
            r#"(module (import "wasi_snapshot_preview1" "path_open" (func))"#,
            1,
        );
        let err = engine.load_guest(sneaky.as_bytes(), "test").await.err().expect("refused");
        assert!(matches!(err, LoadError::Abi(AbiError::ForbiddenImport { .. })), "{err}");

        let wrong_abi = wat_guest(OK_OUTPUT, "").replace("(result i32) i32.const 1)", "(result i32) i32.const 2)");
        let err = engine.load_guest(wrong_abi.as_bytes(), "test").await.err().expect("refused");
        assert!(matches!(err, LoadError::Abi(AbiError::AbiVersion { found: 2, expected: 1 })), "{err}");

        let err = engine.load_guest(b"\0asm garbage", "test").await.err().expect("refused");
        assert!(matches!(err, LoadError::Compile(_)), "{err}");
    }

    #[tokio::test]
    async fn the_gate_turns_away_requests_past_its_queueing_deadline() {
        let gate = Gate::new(1, Duration::from_millis(10));
        let held = gate.enter().await.expect("first slot");
        assert!(matches!(gate.enter().await, Err(SandboxError::Busy(_))));
        drop(held);
        assert!(gate.enter().await.is_ok());
    }

    /// A guest that imports the capability functions; `run` is the body of
    /// `avap_run`. A request `{}` is at offset 32.
    fn capability_guest(run: &str) -> String {
        format!(
            r#"(module
              (import "avap" "db_query" (func $db (param i32 i32) (result i32)))
              (import "avap" "reply_read" (func $read (param i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "9.9.9")
              (data (i32.const 32) "{{}}")
              (global $n (mut i32) (i32.const 0))
              (func (export "avap_abi_version") (result i32) i32.const 1)
              (func (export "avap_guest_version") (result i64) i64.const 5)
              (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
              (func (export "avap_run") (param i32 i32) (result i64) {run}))"#
        )
    }

    #[tokio::test]
    async fn a_capability_call_round_trips_through_guest_memory() {
        // db_query, then reply_read of exactly that length at 1024, then
        // return that range as the output.
        let body = "(global.set $n (call $db (i32.const 32) (i32.const 2)))
                    (drop (call $read (i32.const 1024) (global.get $n)))
                    (i64.or (i64.const 0x40000000000) (i64.extend_i32_u (global.get $n)))";
        let exec = run(&capability_guest(body), &limits()).await.expect("ok");
        assert_eq!(exec.output, br#"{"error":"capability 'db' is not granted by this host"}"#);
    }

    #[tokio::test]
    async fn capability_abi_violations_stop_the_execution() {
        for (body, expect) in [
            ("(drop (call $db (i32.const 65000) (i32.const 1000))) i64.const 0", "outside guest memory"),
            ("(drop (call $db (i32.const 0) (i32.const -1))) i64.const 0", "negative length"),
            ("(drop (call $read (i32.const 0) (i32.const 4))) i64.const 0", "no reply pending"),
            (
                "(global.set $n (call $db (i32.const 32) (i32.const 2)))
                 (drop (call $read (i32.const 1024) (i32.const 3))) i64.const 0",
                "for a reply of",
            ),
            (
                "(global.set $n (call $db (i32.const 32) (i32.const 2)))
                 (drop (call $read (i32.const 65530) (global.get $n))) i64.const 0",
                "outside guest memory",
            ),
        ] {
            let err = run(&capability_guest(body), &limits()).await.expect_err("must stop");
            match &err {
                SandboxError::GuestAbi(msg) => assert!(msg.contains(expect), "{msg} should mention {expect}"),
                other => panic!("{body}: expected a guest ABI error, got {other:?}"),
            }
        }
    }
}
