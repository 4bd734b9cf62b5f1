//! The sandbox: one `Engine` and one `InstancePre` for the process, a fresh
//! `Store` and instance for every execution, dropped afterwards.
//!
//! Every store gets, before the guest runs a single instruction:
//! - a memory limiter (one linear memory, capped at `max_memory_bytes`),
//! - a fuel budget (a deterministic CPU budget; host calls burn none),
//! - an epoch deadline (a wall-clock budget; the ticker thread advances the
//!   epoch every [`EPOCH_TICK`], and at each tick the guest yields to tokio so
//!   one long script cannot starve the others),
//! - WASI functions of our own that reach nothing ([`wasi`]), stdout and
//!   stderr into capped buffers.
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
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig,
    Store, Trap, TypedFunc, UpdateDeadline,
};

use avap_abi::export;

use crate::capability::{self, CapState, Capabilities, CapabilityAbiError};
use abi::{AbiError, GuestLimits};

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

impl Limits {
    /// The caps the guest is told in every input document.
    pub fn guest(&self) -> GuestLimits {
        GuestLimits { max_output_bytes: self.max_output_bytes }
    }
}

impl Default for Limits {
    /// The built-in defaults ([`crate::Config::defaults`]).
    fn default() -> Self {
        crate::Config::defaults().limits()
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

/// The identity of `engine`'s compiled code: SHA-256 over wasmtime's
/// precompile compatibility hash (the compiler's target, its flags and the
/// CPU features it uses, the settings compiled code depends on, the
/// WebAssembly features and wasmtime's version). Two engines with the same
/// identity take each other's compiled modules; a precompiled guest is
/// signed for one identity ([`artifacts::open_signed`]). The same on every
/// machine with the same CPU features running the same release.
pub fn engine_id(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash as _;
    /// A `Hasher` that feeds SHA-256 (`finish` is never used by `Hash`
    /// implementations, which only write).
    struct Feed(Sha256);
    impl std::hash::Hasher for Feed {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }
    let mut feed = Feed(Sha256::new_with_prefix(b"avap engine id v1\0"));
    engine.precompile_compatibility_hash().hash(&mut feed);
    feed.0.finalize().into()
}

/// What this host compiles for a guest module: the module as the snapshot
/// tool instruments it (its globals and memory also exported, so that it
/// can later be prepared without a second compile), or the module as it is
/// when the tool cannot read it (`false`). CPU-bound (a few milliseconds
/// for the guest): call it off the async workers.
pub fn compile_form(wasm: &[u8]) -> (Vec<u8>, bool) {
    match wasmtime_wizer::Wizer::new().instrument(wasm) {
        Ok((_, instrumented)) => (instrumented, true),
        Err(_) => (wasm.to_vec(), false),
    }
}

/// A release's precompiled artifact offered with a guest module
/// ([`SandboxEngine::load_guest_with`]), and the keys that may have
/// signed it.
#[derive(Debug, Clone)]
pub struct ArtifactOffer {
    pub artifact: artifacts::SignedArtifact,
    pub trusted: Arc<[avap_wire::guest_sig::GuestPublicKey]>,
}

/// A guest module compiled ahead of time for this engine
/// ([`SandboxEngine::precompile`]), and what a signature of it states.
pub struct PrecompiledGuest {
    /// `Module::serialize` of the module as this host compiles it.
    pub artifact: Vec<u8>,
    pub statement: avap_wire::guest_sig::ArtifactStatement,
    /// The guest as loaded (version, ABI) to compile it.
    pub info: GuestInfo,
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
    /// How long compiling (or reading) and probing the module took.
    pub load_ms: u64,
    /// Whether the compiled module was read from this host's artifacts
    /// ([`artifacts`]) rather than compiled.
    pub from_artifact: bool,
    /// Whether the compiled module was the release's precompiled artifact
    /// (signed, [`artifacts::open_signed`]) rather than compiled here.
    pub precompiled: bool,
    /// Why a precompiled artifact that came with the module was not taken
    /// (the module was compiled instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_refused: Option<String>,
    /// For a prepared guest: the snapshot's size and how long it took to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
}

/// How a prepared guest was made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotInfo {
    pub size_bytes: usize,
    pub build_ms: u64,
    /// Whether it was read from this host's artifacts rather than made.
    pub from_artifact: bool,
    /// Catalog commands written in AVAP the snapshot holds, parsed.
    pub functions: u64,
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

/// Where a guest's compiled module came from.
enum Compiled {
    /// Compiled here, now (and why an offered artifact was not taken).
    Here { refused: Option<String> },
    /// This host's own, from an earlier start.
    HostCache,
    /// The release's precompiled artifact.
    Precompiled,
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
            alloc: get(export::ALLOC.name)?,
            run: get(export::RUN.name)?,
            memory: get(export::MEMORY)?,
            initialize: module.get_export_index(export::INITIALIZE.name),
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
    /// Where compiled guests are kept between starts, when there is one.
    artifacts: Option<Arc<artifacts::ArtifactCache>>,
    /// [`engine_id`] of `engine`.
    id: [u8; 32],
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
            .max_wasm_stack(avap_abi::GUEST_STACK_BYTES)
            .async_stack_size(2 << 20);
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("building the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(anyhow::Error::from).context("linking WASI preview 1")?;
        capability::add_to_linker(&mut linker, cap_state)
            .map_err(anyhow::Error::from)
            .context("linking the capability imports")?;

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
            id: engine_id(&engine),
            engine,
            linker: Arc::new(linker),
            pool_slots,
            max_memory_bytes: limits.max_memory_bytes,
            capabilities,
            artifacts: None,
        })
    }

    /// Keeps compiled guests in `dir` ([`artifacts`]) and takes them from
    /// there at later starts. A directory that cannot be used is said in the
    /// log and the engine compiles as before.
    pub fn keep_artifacts_in(&mut self, dir: &std::path::Path) {
        match artifacts::ArtifactCache::open(dir, &self.engine) {
            Ok(cache) => {
                tracing::info!(dir = %dir.display(), "compiled guests are kept in this directory between starts");
                self.artifacts = Some(Arc::new(cache));
            }
            Err(e) => tracing::warn!(error = %e, "compiled guests are not kept between starts"),
        }
    }

    /// The compiled module of `compiled` (what this host compiles for the
    /// guest module `module`): what this host compiled from the same bytes
    /// before, else the release's precompiled artifact if `offer` holds one
    /// that verifies, else compiled now (on a blocking thread).
    async fn compile(
        &self,
        module: &Arc<[u8]>,
        compiled: Vec<u8>,
        offer: Option<ArtifactOffer>,
    ) -> Result<(Module, Compiled), LoadError> {
        if let Some((stored, _)) = self.stored(compiled.clone()).await {
            return Ok((stored, Compiled::HostCache));
        }
        let (engine, cache, id, module) = (self.engine.clone(), self.artifacts.clone(), self.id, module.clone());
        tokio::task::spawn_blocking(move || {
            let mut refused = None;
            if let Some(offer) = offer {
                match artifacts::open_signed(&engine, &id, &offer.artifact, &module, &compiled, &offer.trusted) {
                    Ok((precompiled, signed_by)) => {
                        tracing::info!(%signed_by, "the guest's precompiled artifact verified: loaded without compiling");
                        return Ok((precompiled, Compiled::Precompiled));
                    }
                    Err(why) => {
                        tracing::warn!(reason = %why, "the guest's precompiled artifact was refused: compiling the module");
                        refused = Some(why);
                    }
                }
            }
            let module = Module::new(&engine, &compiled).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
            if let Some(cache) = &cache {
                cache.store(&compiled, &module, &[]);
            }
            Ok((module, Compiled::Here { refused }))
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compiler task failed: {e}")))?
    }

    /// What this host keeps under `key` ([`artifacts`]), read on a blocking
    /// thread.
    async fn stored(&self, key: Vec<u8>) -> Option<(Module, Vec<u8>)> {
        let (engine, cache) = (self.engine.clone(), self.artifacts.clone()?);
        tokio::task::spawn_blocking(move || cache.load(&engine, &key)).await.ok().flatten()
    }

    /// What executions on this engine are granted.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// [`engine_id`] of this engine: what a precompiled guest must be
    /// signed for.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Compiles and vets a guest module: imports against the allow-list,
    /// exports against the ABI, then a probe instance that must report the
    /// right ABI version and a version string. A binary module is compiled
    /// as the snapshot tool instruments it ([`compile_form`]), so that
    /// [`Self::prepare`] needs no second compile of it; one the tool cannot
    /// read runs as it is.
    pub async fn load_guest(&self, wasm: &[u8], source: &str) -> Result<Guest, LoadError> {
        self.load_guest_with(wasm, source, None).await
    }

    /// [`Self::load_guest`], taking the compiled module from `offer` (a
    /// release's precompiled artifact) when its signature verifies for this
    /// module and this engine; otherwise compiling as usual, and saying why
    /// in [`GuestInfo::artifact_refused`].
    pub async fn load_guest_with(
        &self,
        wasm: &[u8],
        source: &str,
        offer: Option<ArtifactOffer>,
    ) -> Result<Guest, LoadError> {
        let started = Instant::now();
        let wasm: Arc<[u8]> = wasm.into();
        // Instrumenting and compiling take a CPU for a while: both off the
        // async workers.
        let bytes = wasm.clone();
        let (compiled, instrumented) = tokio::task::spawn_blocking(move || compile_form(&bytes))
            .await
            .map_err(|e| LoadError::Compile(format!("instrumenting task failed: {e}")))?;
        let (module, how) = self.compile(&wasm, compiled, offer).await?;
        abi::check_module(&module)?;
        let exports = Exports::of(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let mut guest = Guest {
            pre,
            exports,
            info: GuestInfo {
                version: String::new(),
                digest: module_digest(&wasm),
                source: source.to_string(),
                abi_version: 0,
                size_bytes: wasm.len(),
                load_ms: 0,
                from_artifact: matches!(how, Compiled::HostCache),
                precompiled: matches!(how, Compiled::Precompiled),
                artifact_refused: match how {
                    Compiled::Here { refused } => refused,
                    _ => None,
                },
                snapshot: None,
            },
            wasm,
            instrumented,
            prepared: false,
        };
        let (abi_version, version) = self.probe(&guest).await.map_err(|e| LoadError::Probe(e.to_string()))?;
        if abi_version != abi::ABI_VERSION {
            return Err(AbiError::AbiVersion { found: abi_version, expected: abi::ABI_VERSION }.into());
        }
        semver::Version::parse(&version).map_err(|e| AbiError::BadVersion(format!("'{version}': {e}")))?;
        guest.info.abi_version = abi_version;
        guest.info.version = version;
        guest.info.load_ms = started.elapsed().as_millis() as u64;
        Ok(guest)
    }

    /// Compiles `wasm` ahead of time for engines of this one's settings
    /// (`avap precompile`): loaded and probed like any guest (so a module
    /// off the ABI is refused here, not on the fleet), then serialized, with
    /// the statement a release signs ([`avap_wire::guest_sig`]).
    pub async fn precompile(&self, wasm: &[u8]) -> Result<PrecompiledGuest, LoadError> {
        let guest = self.load_guest(wasm, "precompile").await?;
        let module = guest.pre.module().clone();
        let bytes = guest.wasm.clone();
        let (artifact, compiled) = tokio::task::spawn_blocking(move || {
            let artifact = module.serialize().map_err(|e| LoadError::Compile(format!("serializing: {e:#}")))?;
            Ok::<_, LoadError>((artifact, compile_form(&bytes).0))
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compiler task failed: {e}")))??;
        let statement = avap_wire::guest_sig::ArtifactStatement {
            artifact: Sha256::digest(&artifact).into(),
            module: Sha256::digest(wasm).into(),
            compiled: Sha256::digest(&compiled).into(),
            engine: self.id,
        };
        Ok(PrecompiledGuest { artifact, statement, info: guest.info })
    }

    /// Reads `avap_abi_version` and `avap_guest_version` from a throwaway instance.
    async fn probe(&self, guest: &Guest) -> Result<(i32, String), SandboxError> {
        let limits = Limits { max_memory_bytes: self.max_memory_bytes, ..Limits::default() };
        let mut run = Run::start(self, guest, &limits).await?;
        let abi_version: TypedFunc<(), i32> = run.func(export::ABI_VERSION.name)?;
        let abi_version = finish(&run.memory_hit, &run.limits, abi_version.call_async(&mut run.store, ())).await?;
        let version_fn: TypedFunc<(), i64> = run.func(export::GUEST_VERSION.name)?;
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
            let start = Run::start(self, guest, limits);
            let mut run = tracing::Instrument::instrument(start, crate::inner_span!("instantiate")).await?;
            let alloc: TypedFunc<i32, i32> = run.export_func(&guest.exports.alloc, export::ALLOC.name)?;
            let run_fn: TypedFunc<(i32, i32), i64> = run.export_func(&guest.exports.run, export::RUN.name)?;
            let len = i32::try_from(input.len())
                .map_err(|_| SandboxError::InputTooLarge { size: input.len(), limit: limits.max_input_bytes })?;
            let ptr = finish(&run.memory_hit, &run.limits, alloc.call_async(&mut run.store, len)).await?;
            if ptr == 0 && len != 0 {
                return Err(SandboxError::GuestAbi("avap_alloc could not allocate the input buffer".into()));
            }
            run.memory
                .write(&mut run.store, ptr as u32 as usize, input)
                .map_err(|_| SandboxError::GuestAbi("avap_alloc returned a buffer outside guest memory".into()))?;
            let call = finish(&run.memory_hit, &run.limits, run_fn.call_async(&mut run.store, (ptr, len)));
            let packed =
                tracing::Instrument::instrument(call, crate::inner_span!("run", input_bytes = input.len())).await?;
            let output = run.read(packed, limits.max_output_bytes)?;
            let fuel_used = limits.fuel.saturating_sub(run.store.get_fuel().unwrap_or(0));
            Ok((output, fuel_used, run))
        };
        // Epoch interruption stops guest code at the deadline; this timeout
        // also bounds instantiation and any time spent in host calls.
        let (output, fuel_used, mut run) = match tokio::time::timeout(limits.timeout + HOST_TIMEOUT_GRACE, work).await {
            Ok(result) => result?,
            Err(_) => return Err(SandboxError::Timeout(limits.timeout)),
        };
        let stdio = std::mem::replace(&mut run.store.data_mut().stdio, wasi::Stdio::new(0));
        Ok(Execution { output, stdout: stdio.stdout, stderr: stdio.stderr, fuel_used, duration: started.elapsed() })
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

mod gate;
mod limiter;
mod run;
mod snapshot;
#[cfg(test)]
mod tests;
pub mod wasi;

pub mod abi;
pub mod artifacts;

pub use gate::Gate;
use limiter::{MemoryLimiter, StoreState, cap_state};
use run::{Run, finish};
pub use snapshot::{Preparation, Prepared, Snapshot};
