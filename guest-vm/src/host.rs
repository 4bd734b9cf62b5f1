//! Host capabilities, guest side: how `RequestGet`, `RequestPost` and
//! `ormDirect` reach outside the sandbox.
//!
//! The guest never performs I/O. A command that needs the outside world
//! builds a JSON request, hands it to the host through [`Host::call`], and
//! reads the host's JSON reply: `{"ok": <payload>}` or `{"error": "<message>"}`.
//! In the wasm build the calls are the `avap` module's imports (see
//! `docs/ABI.md`); natively there is no host unless the embedder passes one
//! (tests use a scripted one), and every capability call fails with a
//! catchable error.
//!
//! Requests:
//! - `http`: `{"method": "GET"|"POST", "url", "query": [[k, v]...],
//!   "headers": [[k, v]...], "body": null | {"json": "<text>"} | {"text": "<text>"}}`;
//!   reply payload `{"status", "reason", "body": "<text>", "url"}`.
//! - `db`: `{"sql": ["part", "part"...], "params": [<json>...]}`, where the
//!   statement is the parts joined by one parameter placeholder each
//!   (`parts.len() == params.len() + 1`); reply payload
//!   `{"columns": [...], "rows": [[...]...]}` or `{"affected": N}`.

use crate::error::Error;

/// A capability the host may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Outbound HTTP (`RequestGet`, `RequestPost`).
    Http,
    /// The host's database (`ormDirect`).
    Db,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::Db => "db",
        }
    }
}

/// The host side of capability calls.
pub trait Host {
    /// Sends one request; returns the reply document, or why the call could
    /// not be made at all.
    fn call(&mut self, capability: Capability, request: &[u8]) -> Result<Vec<u8>, String>;
}

/// No host: every capability is unavailable.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHost;

impl Host for NoHost {
    fn call(&mut self, capability: Capability, _request: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("capability '{}' is not available: this interpreter runs without a host", capability.name()))
    }
}

/// Sends `request` and returns the reply's payload, turning every failure
/// into a runtime error that names the command.
pub(crate) fn call(
    host: &mut dyn Host,
    capability: Capability,
    command: &str,
    request: &serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let bytes = serde_json::to_vec(request).map_err(|e| Error::runtime(format!("{command}: {e}")))?;
    let reply = host.call(capability, &bytes).map_err(|e| Error::runtime(format!("{command}: {e}")))?;
    let reply: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|e| Error::runtime(format!("{command}: the host sent an unreadable reply: {e}")))?;
    let serde_json::Value::Object(mut reply) = reply else {
        return Err(Error::runtime(format!("{command}: the host sent a reply that is not an object")));
    };
    if let Some(serde_json::Value::String(message)) = reply.remove("error") {
        return Err(Error::runtime(format!("{command}: {message}")));
    }
    reply
        .remove("ok")
        .ok_or_else(|| Error::runtime(format!("{command}: the host's reply has neither 'ok' nor 'error'")))
}
