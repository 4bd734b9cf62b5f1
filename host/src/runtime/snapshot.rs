//! Prepared guests: an instance that ran `avap_prepare` with the live
//! catalog, snapshotted (wasmtime-wizer) into a module whose every
//! execution starts from that state.

use super::*;

impl SandboxEngine {
    /// Makes the prepared guest of `base` for a catalog: an instance of it
    /// runs `_initialize` and `avap_prepare(prepare_doc)` (the catalog parsed,
    /// its commands compiled to trees, the allocator warm), and its memory
    /// and globals become the initial state of a new module. Off the request
    /// path; within `limits` (memory, fuel, deadline) like any execution.
    /// `Ok(None)`: the guest cannot be prepared (no `avap_prepare`, or a module
    /// the snapshot tool cannot read); it then runs as it is, the catalog in
    /// each input. [`Self::begin_prepare`] then [`Self::finish_prepare`].
    pub async fn prepare(
        &self,
        base: &Guest,
        prepare_doc: &[u8],
        limits: &Limits,
    ) -> Result<Option<Prepared>, LoadError> {
        match self.begin_prepare(base, prepare_doc, limits).await? {
            None => Ok(None),
            Some(Preparation::Ready(prepared)) => Ok(Some(*prepared)),
            Some(Preparation::Snapshot(snapshot)) => self.finish_prepare(base, snapshot).await.map(Some),
        }
    }

    /// The quick part of [`Self::prepare`] (milliseconds): the instance runs
    /// `avap_prepare` (so the catalog's problems are known) and its state is
    /// taken as a module. What is left is compiling that module, about as
    /// long as compiling the guest ([`Self::finish_prepare`]), unless this
    /// host compiled the very same snapshot before ([`Preparation::Ready`]).
    pub async fn begin_prepare(
        &self,
        base: &Guest,
        prepare_doc: &[u8],
        limits: &Limits,
    ) -> Result<Option<Preparation>, LoadError> {
        if !base.instrumented || base.pre.module().get_export(export::PREPARE.name).is_none() {
            return Ok(None);
        }
        let started = Instant::now();
        let fail = |what: &str, e: &dyn std::fmt::Display| LoadError::Prepare(format!("{what}: {e}"));
        // What determines the prepared guest: the module and the catalog.
        // (Its bytes do not: the guest's hash seeds come from random_get.)
        let key =
            [b"avap prepared guest\0".as_slice(), &Sha256::digest(&*base.wasm), &Sha256::digest(prepare_doc)].concat();
        if let Some((module, meta)) = self.stored(key.clone()).await
            && let Ok(meta) = serde_json::from_slice::<PreparedMeta>(&meta)
        {
            return self
                .prepared_guest(base, module, meta, started, true)
                .map(|p| Some(Preparation::Ready(Box::new(p))));
        }
        let mut run = Run::start(self, base, limits).await.map_err(|e| fail("instantiating", &e))?;
        let alloc: TypedFunc<i32, i32> = run.func(export::ALLOC.name).map_err(|e| fail("alloc", &e))?;
        let prepare: TypedFunc<(i32, i32), i64> = run.func(export::PREPARE.name).map_err(|e| fail("prepare", &e))?;
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
        let wizer = wasmtime_wizer::Wizer::new();
        let (cx, _) = wizer.instrument(&base.wasm).map_err(|e| fail("instrumenting", &e))?;
        let bytes = wizer
            .snapshot(&cx, &mut SnapshotState { store: &mut run.store, instance: run.instance })
            .await
            .map_err(|e| fail("snapshot", &e))?;
        drop(run);
        tracing::debug!(
            prepare_ms = prepared_at.as_millis() as u64,
            snapshot_ms = (started.elapsed() - prepared_at).as_millis() as u64,
            "guest snapshot taken"
        );
        // What the guest says goes to /health and the log: bounded.
        let meta = PreparedMeta {
            size_bytes: bytes.len(),
            functions: answer.functions.unwrap_or(0),
            catalog_errors: answer
                .catalog_errors
                .into_iter()
                .take(MAX_CATALOG_ERRORS)
                .map(|e| (guest_text(&e.name), guest_text(&e.error)))
                .collect(),
        };
        Ok(Some(Preparation::Snapshot(Snapshot { bytes, key, meta, started })))
    }

    /// Compiles a snapshot [`Self::begin_prepare`] took of `base` (on a
    /// blocking thread) into the prepared guest, and keeps it in this
    /// host's artifacts for later starts.
    pub async fn finish_prepare(&self, base: &Guest, snapshot: Snapshot) -> Result<Prepared, LoadError> {
        let Snapshot { bytes, key, meta, started } = snapshot;
        let fail = |what: &str, e: &dyn std::fmt::Display| LoadError::Prepare(format!("{what}: {e}"));
        let compiling = Instant::now();
        let engine = self.engine.clone();
        let module = tokio::task::spawn_blocking(move || Module::new(&engine, bytes))
            .await
            .map_err(|e| fail("compiler task", &e))?
            .map_err(|e| fail("compiling the snapshot", &e))?;
        tracing::debug!(compile_ms = compiling.elapsed().as_millis() as u64, "guest snapshot compiled");
        let prepared = self.prepared_guest(base, module, meta, started, false)?;
        if let (Some(cache), Ok(meta)) = (&self.artifacts, serde_json::to_vec(&prepared.meta)) {
            let (cache, module) = (cache.clone(), prepared.guest.pre.module().clone());
            // Off the async workers; best effort (a failure is logged).
            let _ = tokio::task::spawn_blocking(move || cache.store(&key, &module, &meta)).await;
        }
        Ok(prepared)
    }

    /// The prepared guest of `base` from its compiled snapshot.
    fn prepared_guest(
        &self,
        base: &Guest,
        module: Module,
        meta: PreparedMeta,
        started: Instant,
        from_artifact: bool,
    ) -> Result<Prepared, LoadError> {
        abi::check_module(&module)?;
        let exports = Exports::of(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let mut info = base.info.clone();
        info.snapshot = Some(SnapshotInfo {
            size_bytes: meta.size_bytes,
            build_ms: started.elapsed().as_millis() as u64,
            functions: meta.functions,
            from_artifact,
        });
        Ok(Prepared {
            guest: Guest { pre, exports, info, wasm: base.wasm.clone(), instrumented: false, prepared: true },
            catalog_errors: meta.catalog_errors.clone(),
            meta,
        })
    }
}

/// What a prepared guest keeps beside its compiled snapshot on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct PreparedMeta {
    size_bytes: usize,
    functions: u64,
    catalog_errors: Vec<(String, String)>,
}

/// The most catalog errors kept from one `avap_prepare` answer.
const MAX_CATALOG_ERRORS: usize = 20;

/// The longest text kept from what a guest reports about itself.
pub(super) const MAX_GUEST_TEXT_BYTES: usize = 512;

/// `text` cut to [`MAX_GUEST_TEXT_BYTES`] at a character boundary.
pub(super) fn guest_text(text: &str) -> String {
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

/// What [`SandboxEngine::begin_prepare`] gives.
pub enum Preparation {
    /// The prepared guest: this host had compiled this very snapshot before.
    Ready(Box<Prepared>),
    /// The snapshot, taken, to be compiled ([`SandboxEngine::finish_prepare`]).
    Snapshot(Snapshot),
}

/// A prepared guest's state, taken, not compiled yet.
pub struct Snapshot {
    bytes: Vec<u8>,
    /// Its key in this host's artifacts.
    key: Vec<u8>,
    meta: PreparedMeta,
    started: Instant,
}

impl Snapshot {
    /// The catalog commands the guest found invalid (by name, with why).
    pub fn catalog_errors(&self) -> &[(String, String)] {
        &self.meta.catalog_errors
    }
}

/// A prepared guest, and the catalog commands it found invalid (by name,
/// with why).
pub struct Prepared {
    pub guest: Guest,
    pub catalog_errors: Vec<(String, String)>,
    meta: PreparedMeta,
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
