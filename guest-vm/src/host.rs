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
//! The documents are the ABI's ([`avap_abi::wire`]): an
//! [`avap_abi::wire::HttpRequest`] answered by an
//! [`avap_abi::wire::HttpResponse`], a [`avap_abi::wire::DbRequest`]
//! answered by a [`avap_abi::wire::DbReply`].

use avap_abi::wire::Reply;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A capability the host may grant (the ABI's [`avap_abi::Capability`]).
pub use avap_abi::Capability;

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

/// Sends `request` and returns the reply's payload ([`Reply`]), turning
/// every failure into a runtime error that names the command.
pub(crate) fn call<P: DeserializeOwned>(
    host: &mut dyn Host,
    capability: Capability,
    command: &str,
    request: &impl Serialize,
) -> Result<P, Error> {
    let bytes = serde_json::to_vec(request).map_err(|e| Error::runtime(format!("{command}: {e}")))?;
    let reply = host.call(capability, &bytes).map_err(|e| Error::runtime(format!("{command}: {e}")))?;
    let reply: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|e| Error::runtime(format!("{command}: the host sent an unreadable reply: {e}")))?;
    if !reply.is_object() {
        return Err(Error::runtime(format!("{command}: the host sent a reply that is not an object")));
    }
    match serde_json::from_value::<Reply<P>>(reply) {
        Ok(Reply::Ok(payload)) => Ok(payload),
        Ok(Reply::Error(message)) => Err(Error::runtime(format!("{command}: {message}"))),
        Err(e) => Err(Error::runtime(format!("{command}: the host's reply is not one the ABI allows: {e}"))),
    }
}
