//! Host capabilities: the only ways a guest reaches beyond its own memory.
//!
//! A deployment grants capabilities by name (`AVAP_CAPABILITIES`, default
//! `http,db`). The guest calls them through three imports of the `avap`
//! module, linked for every guest whether granted or not, so one module runs
//! on every host; a capability that is not granted answers every call with a
//! catchable error.
//!
//! - `http_request(ptr: i32, len: i32) -> i32` ([`http`])
//! - `db_query(ptr: i32, len: i32) -> i32` ([`db`])
//! - `reply_read(ptr: i32, len: i32) -> i32`
//!
//! The first two read a JSON request from `[ptr, ptr + len)` of guest
//! memory (a request over [`MAX_REQUEST_BYTES`] gets an error reply), perform it (asynchronously: a waiting
//! guest holds no worker thread), and return the length of the JSON reply
//! (`{"ok": ...}` or `{"error": "..."}`, at most [`MAX_REPLY_BYTES`]), which
//! the host keeps for the guest. `reply_read` copies that reply to
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

use wasmtime::{Caller, Extern};

use crate::abi::EXPORT_MEMORY;
pub use avap_abi::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};

/// The import module of the capability functions.
pub const IMPORT_MODULE: &str = "avap";
/// The capability imports, with what each one reaches.
pub const IMPORTS: &[(&str, &str)] = &[
    ("http_request", "capability `http`: outbound HTTP(S) under the destination rules and caps of http.rs"),
    ("db_query", "capability `db`: one SQL statement on the host's database, parameters bound"),
    ("reply_read", "copies the pending reply of the last call into guest memory"),
];

/// A capability by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Db,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Db => "db",
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

    /// The granted capability names, for `/health`.
    pub fn granted(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.http.is_some() {
            out.push(Kind::Http.name());
        }
        if self.db.is_some() {
            out.push(Kind::Db.name());
        }
        out
    }
}

/// Per-execution capability state, kept in the store and dropped with it
/// (with it the execution's scratch database, if it opened one).
pub struct CapState {
    caps: Arc<Capabilities>,
    deadline: Instant,
    http_requests: u32,
    db_queries: u32,
    db_session: db::DbSession,
    pending: Option<Vec<u8>>,
}

impl CapState {
    pub fn new(caps: Arc<Capabilities>, deadline: Instant) -> Self {
        CapState {
            caps,
            deadline,
            http_requests: 0,
            db_queries: 0,
            db_session: db::DbSession::default(),
            pending: None,
        }
    }
}

/// The longest error message handed to a guest, in bytes. Messages carry
/// what a server or a database said, which can echo what the script sent
/// (a value in an SQL error); past this they are cut.
pub const MAX_ERROR_BYTES: usize = 4096;

/// `{"error": message}` as bytes, the message cut at [`MAX_ERROR_BYTES`].
fn error_reply(message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_ERROR_BYTES);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = b"{\"error\":".to_vec();
    // Writing a &str into a Vec cannot fail.
    if cut < message.len() {
        let _ =
            serde_json::to_writer(&mut out, &format!("{} ... ({} bytes cut)", &message[..cut], message.len() - cut));
    } else {
        let _ = serde_json::to_writer(&mut out, message);
    }
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
    match caller.get_export(EXPORT_MEMORY) {
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
pub async fn call<T: Send>(
    caller: &mut Caller<'_, T>,
    state: fn(&mut T) -> &mut CapState,
    kind: Kind,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(caller)?;
    let r = range(ptr, len, mem.data_size(&*caller), usize::MAX)?;
    let st = state(caller.data_mut());
    st.pending = None;
    if r.len() > MAX_REQUEST_BYTES {
        // A valid range, just too big: the script's error, not the guest's.
        let message = format!("the request of {} bytes exceeds the cap of {MAX_REQUEST_BYTES} bytes", r.len());
        return leave_reply(caller, state, error_reply(&message));
    }
    let request = mem.data(&*caller)[r].to_vec();
    let st = state(caller.data_mut());
    let (caps, deadline) = (st.caps.clone(), st.deadline);
    let result = match (kind, &caps.http, &caps.db) {
        (Kind::Http, Some(http), _) => {
            let max = http.config().max_requests;
            if st.http_requests >= max {
                Err(format!("limit exceeded: at most {max} HTTP requests per execution"))
            } else {
                st.http_requests += 1;
                http.perform(&request, deadline).await
            }
        }
        (Kind::Db, _, Some(db)) => {
            let max = db.config().max_queries;
            if st.db_queries >= max {
                Err(format!("limit exceeded: at most {max} database statements per execution"))
            } else {
                st.db_queries += 1;
                db.run(&request, deadline, &mut st.db_session).await
            }
        }
        _ => Err(format!("capability '{}' is not granted by this host", kind.name())),
    };
    if let Some(calls) = &caps.calls {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        calls.get_or_create(&[("capability", kind.name()), ("result", outcome)]).inc();
    }
    // The payload is JSON text the capability wrote (valid by construction).
    let reply = match result {
        Ok(payload) if payload.len() + 8 <= MAX_REPLY_BYTES => {
            let mut out = Vec::with_capacity(payload.len() + 8);
            out.extend_from_slice(b"{\"ok\":");
            out.extend_from_slice(&payload);
            out.push(b'}');
            out
        }
        Ok(payload) => {
            error_reply(&format!("the reply of {} bytes exceeds the cap of {MAX_REPLY_BYTES} bytes", payload.len() + 8))
        }
        Err(message) => error_reply(&message),
    };
    leave_reply(caller, state, reply)
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
pub fn reply_read<T>(
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
