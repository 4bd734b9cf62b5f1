//! Host capabilities: the only ways a guest reaches beyond its own memory.
//!
//! A deployment grants capabilities by name (`AVAP_CAPABILITIES`, default
//! `http,db`). The guest calls them through the imports of the `avap` module
//! ([`avap_abi::import`]), linked for every guest whether granted or not, so
//! one module runs on every host; a capability that is not granted answers
//! every call with a catchable error.
//!
//! Each capability owns its settings, its process-wide state and what one
//! execution holds of it: [`http`] ([`http::HttpCapability`],
//! [`http::HttpState`]) and [`db`] ([`db::DbCapability`], [`db::DbSession`]).
//! This module links them ([`add_to_linker`]) and moves bytes across the
//! boundary.
//!
//! `http_request(ptr, len)` and `db_query(ptr, len)` read a JSON request
//! ([`avap_abi::wire::HttpRequest`], [`avap_abi::wire::DbRequest`]) from
//! `[ptr, ptr + len)` of guest memory (one over [`MAX_REQUEST_BYTES`] gets an
//! error reply), perform it (asynchronously: a waiting guest holds no worker
//! thread), and return the length of the reply ([`avap_abi::wire::Reply`]:
//! `{"ok": ...}` or `{"error": "..."}`, at most [`MAX_REPLY_BYTES`]), which
//! the host keeps for the guest. `reply_read(ptr, len)` copies that reply to
//! `[ptr, ptr + len)`, where `len` must be its exact length, and returns 0.
//! A range outside guest memory, a negative length, or `reply_read` with no
//! reply pending or the wrong length is an ABI violation: the execution
//! stops with a guest ABI error.
//!
//! Host calls burn no fuel, but they run under the execution's wall-clock
//! deadline: each request's own timeout is cut to what is left of it.

pub mod db;
pub mod http;

use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

use wasmtime::{Caller, Extern, Linker};

pub use avap_abi::Capability;
use avap_abi::{MAX_ERROR_BYTES, export, import};
pub use avap_abi::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};

/// Why a capability call produced no payload. Every variant is a catchable
/// runtime error for the script, with a message it may read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// Not allowed: not granted, a destination or statement the rules
    /// refuse, a header the host manages.
    #[error("{0}")]
    Refused(String),
    /// The request's own timeout or the execution's deadline passed.
    #[error("{0}")]
    Timeout(String),
    /// A cap: calls per execution, response or reply size, rows.
    #[error("{0}")]
    Limit(String),
    /// The other side failed, or the request could not be read.
    #[error("{0}")]
    Failed(String),
}

impl CapError {
    /// The `reason` label of the call metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CapError::Refused(_) => "refused",
            CapError::Timeout(_) => "timeout",
            CapError::Limit(_) => "limit",
            CapError::Failed(_) => "failed",
        }
    }
}

/// What this host grants, shared by every execution.
#[derive(Default)]
pub struct Capabilities {
    pub http: Option<http::HttpCapability>,
    pub db: Option<db::DbCapability>,
    /// Counts calls by capability and result, when set.
    pub calls: Option<crate::metrics::CapabilityCalls>,
}

impl Capabilities {
    /// Grants nothing.
    pub fn none() -> Arc<Self> {
        Arc::new(Capabilities::default())
    }

    /// Opens what `config` grants: builds the HTTP clients and opens the
    /// database pool.
    pub async fn open(config: &crate::Config) -> anyhow::Result<Self> {
        let mut caps = Capabilities::default();
        for capability in config.capabilities.iter() {
            match capability {
                Capability::Http => caps.http = Some(http::HttpCapability::new(config.http())?),
                Capability::Db => {
                    let db = db::DbCapability::connect(config.db())
                        .await
                        .map_err(|e| anyhow::anyhow!("AVAP_DB_URL: {e}"))?;
                    caps.db = Some(db);
                }
            }
        }
        Ok(caps)
    }

    /// The granted capabilities, for `/health`.
    pub fn granted(&self) -> Vec<Capability> {
        Capability::ALL.into_iter().filter(|c| self.is_granted(*c)).collect()
    }

    pub fn is_granted(&self, capability: Capability) -> bool {
        match capability {
            Capability::Http => self.http.is_some(),
            Capability::Db => self.db.is_some(),
        }
    }
}

/// Per-execution capability state, kept in the store and dropped with it
/// (with it the execution's scratch database, if it opened one).
pub struct CapState {
    caps: Arc<Capabilities>,
    deadline: Instant,
    http: http::HttpState,
    db: db::DbSession,
    pending: Option<Vec<u8>>,
}

impl CapState {
    pub fn new(caps: Arc<Capabilities>, deadline: Instant) -> Self {
        CapState { caps, deadline, http: http::HttpState::default(), db: db::DbSession::default(), pending: None }
    }
}

/// Links every capability import of [`avap_abi::import`] into `linker`;
/// `state` finds the execution's [`CapState`] in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut CapState,
) -> wasmtime::Result<()> {
    for capability in Capability::ALL {
        linker.func_wrap_async(
            import::MODULE,
            capability.import().name,
            move |mut caller, (ptr, len): (i32, i32)| {
                Box::new(async move { call(&mut caller, state, capability, ptr, len).await })
            },
        )?;
    }
    linker.func_wrap(
        import::MODULE,
        import::REPLY_READ.name,
        move |mut caller: Caller<'_, T>, ptr: i32, len: i32| reply_read(&mut caller, state, ptr, len),
    )?;
    Ok(())
}

/// `{"error": message}` as bytes, the message cut at [`MAX_ERROR_BYTES`].
fn error_reply(message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_ERROR_BYTES);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = if cut < message.len() {
        format!("{} ... ({} bytes cut)", &message[..cut], message.len() - cut)
    } else {
        message.to_string()
    };
    // Serializing a string cannot fail.
    serde_json::to_vec(&avap_abi::wire::Reply::<()>::Error(message)).unwrap_or_default()
}

/// `{"ok": payload}`, the payload being JSON text a capability wrote (valid
/// by construction), or an error reply when it is over the reply cap.
fn ok_reply(payload: &[u8]) -> Vec<u8> {
    const ENVELOPE: usize = br#"{"ok":}"#.len();
    if payload.len() + ENVELOPE > MAX_REPLY_BYTES {
        let size = payload.len() + ENVELOPE;
        return error_reply(&format!("the reply of {size} bytes exceeds the cap of {MAX_REPLY_BYTES} bytes"));
    }
    let mut out = Vec::with_capacity(payload.len() + ENVELOPE);
    out.extend_from_slice(b"{\"ok\":");
    out.extend_from_slice(payload);
    out.push(b'}');
    out
}

/// A guest that broke the capability ABI (stops the execution).
#[derive(Debug, thiserror::Error)]
#[error("capability ABI: {0}")]
pub struct CapabilityAbiError(pub String);

fn abi_error(msg: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(CapabilityAbiError(msg.into()))
}

fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export(export::MEMORY) {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(abi_error("the guest exports no memory")),
    }
}

/// Checks `[ptr, ptr + len)` against a memory of `size` bytes.
fn range(ptr: i32, len: i32, size: usize, cap: usize) -> wasmtime::Result<std::ops::Range<usize>> {
    let (start, len) = (ptr as u32 as usize, usize::try_from(len).map_err(|_| abi_error("negative length"))?);
    if len > cap {
        return Err(abi_error(format!("a request of {len} bytes exceeds the cap of {cap} bytes")));
    }
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(abi_error(format!("range {start}+{len} lies outside guest memory of {size} bytes"))),
    }
}

/// `http_request` / `db_query`: runs one capability call and leaves its
/// reply pending; returns the reply's length.
async fn call<T: Send>(
    caller: &mut Caller<'_, T>,
    state: fn(&mut T) -> &mut CapState,
    capability: Capability,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(caller)?;
    let r = range(ptr, len, mem.data_size(&*caller), usize::MAX)?;
    state(caller.data_mut()).pending = None;
    if r.len() > MAX_REQUEST_BYTES {
        // A valid range, just too big: the script's error, not the guest's.
        let message = format!("the request of {} bytes exceeds the cap of {MAX_REQUEST_BYTES} bytes", r.len());
        return leave_reply(caller, state, error_reply(&message));
    }
    let request = mem.data(&*caller)[r].to_vec();
    let st = state(caller.data_mut());
    let (caps, deadline) = (st.caps.clone(), st.deadline);
    let span = crate::inner_span!("capability", capability = capability.name());
    let started = std::time::Instant::now();
    let result = async {
        match capability {
            Capability::Http => match &caps.http {
                Some(http) => http.call(&mut st.http, &request, deadline).await,
                None => Err(not_granted(capability)),
            },
            Capability::Db => match &caps.db {
                Some(db) => db.call(&mut st.db, &request, deadline).await,
                None => Err(not_granted(capability)),
            },
        }
    }
    .instrument(span)
    .await;
    if let Some(calls) = &caps.calls {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        calls.calls.get_or_create(&[("capability", capability.name()), ("result", outcome)]).inc();
        calls.duration.get_or_create(&[("capability", capability.name())]).observe(started.elapsed().as_secs_f64());
    }
    let reply = match result {
        Ok(payload) => ok_reply(&payload),
        Err(err) => error_reply(&err.to_string()),
    };
    leave_reply(caller, state, reply)
}

fn not_granted(capability: Capability) -> CapError {
    CapError::Refused(format!("capability '{capability}' is not granted by this host"))
}

/// Keeps `reply` for `reply_read` and returns its length.
fn leave_reply<T>(
    caller: &mut Caller<'_, T>,
    state: fn(&mut T) -> &mut CapState,
    reply: Vec<u8>,
) -> wasmtime::Result<i32> {
    let n = i32::try_from(reply.len()).map_err(|_| abi_error("reply too large"))?;
    state(caller.data_mut()).pending = Some(reply);
    Ok(n)
}

/// `reply_read`: copies the pending reply into guest memory.
fn reply_read<T>(
    caller: &mut Caller<'_, T>,
    state: fn(&mut T) -> &mut CapState,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(caller)?;
    let reply = state(caller.data_mut()).pending.take().ok_or_else(|| abi_error("reply_read with no reply pending"))?;
    if usize::try_from(len).ok() != Some(reply.len()) {
        return Err(abi_error(format!("reply_read of {len} bytes for a reply of {} bytes", reply.len())));
    }
    let r = range(ptr, len, mem.data_size(&*caller), MAX_REPLY_BYTES)?;
    mem.data_mut(&mut *caller)[r].copy_from_slice(&reply);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_to_the_wire_shape_and_caps() {
        let ok: avap_abi::wire::Reply<serde_json::Value> =
            serde_json::from_slice(&ok_reply(br#"{"affected":1}"#)).expect("ok reply");
        assert_eq!(ok, avap_abi::wire::Reply::Ok(serde_json::json!({"affected": 1})));
        let long = "é".repeat(MAX_ERROR_BYTES);
        let err: avap_abi::wire::Reply<()> = serde_json::from_slice(&error_reply(&long)).expect("error reply");
        let avap_abi::wire::Reply::Error(message) = err else { panic!("an error reply") };
        assert!(message.len() < MAX_ERROR_BYTES + 40 && message.ends_with("bytes cut)"), "{message}");
        let big = vec![b'1'; MAX_REPLY_BYTES];
        assert!(String::from_utf8_lossy(&ok_reply(&big)).contains("exceeds the cap"));
    }
}
