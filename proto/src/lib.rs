//! # avap-wire — the AVAP wire contracts
//!
//! Everything here crosses a process boundary and is shared by the host
//! (`avap-host`) and the definition server (`avap-brain`); see
//! `shared/spec/WIRE.md` sections 1, 2 and 4.
//!
//! - [`pb`]: the gRPC API of the definition server, generated at build time
//!   from `proto/avap.proto` (with `protox`, so no system `protoc`).
//! - [`package`]: the signed AVAP package (magic, version, length,
//!   HMAC-SHA256, payload), [`package::pack`] and [`package::verify`].
//! - [`auth`]: the `x-avap-auth` metadata token and its constant-time check.
//! - [`catalog`]: the catalog entry types and the hashes:
//!   - an entry's `hash` is [`catalog::entry_hash`]: the lowercase hex
//!     SHA-256 of the entry's `code`, i.e. of the whole signed package bytes
//!     (header, MAC and payload);
//!   - its interface hash is [`catalog::interface_hash`]: the lowercase hex
//!     SHA-256 of its `interface_json`;
//!   - the catalog's `version_hash` is [`catalog::version_hash`]: the
//!     lowercase hex SHA-256 of the entries sorted by name (then type, hash,
//!     interface hash), each contributing
//!     `name ‖ 0x00 ‖ type ‖ 0x00 ‖ hash ‖ 0x00 ‖ interface hash ‖ '\n'`.
//!     It changes exactly when an entry is added, removed, renamed, retyped,
//!     or its package or interface changes; the entry order on the wire
//!     does not matter.
//!
//! ```
//! use avap_wire::package;
//! let pkg = package::pack(b"key", b"payload").unwrap();
//! assert_eq!(package::verify(b"key", &pkg).unwrap(), b"payload");
//! assert!(package::verify(b"other key", &pkg).is_err());
//! ```

#![forbid(unsafe_code)]

pub mod auth;
pub mod catalog;
pub mod guest_sig;
pub mod keys;
pub mod manifest;
pub mod package;

/// The generated code of the `avap` protobuf package (`proto/avap.proto`):
/// messages ([`pb::CommandRequest`], [`pb::CommandResponse`],
/// [`pb::CatalogResponse`], [`pb::Empty`]), the client
/// ([`pb::DefinitionEngineClient`]) and the server side
/// ([`pb::DefinitionEngine`] trait, [`pb::DefinitionEngineServer`]).
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::invalid_html_tags)]
    tonic::include_proto!("avap");

    pub use definition_engine_client::DefinitionEngineClient;
    pub use definition_engine_server::{DefinitionEngine, DefinitionEngineServer};
}

/// An error and its causes on one line (tonic's transport error alone just
/// says "transport error").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The fully qualified gRPC service name (also the name the health service
/// reports it under).
pub const SERVICE_NAME: &str = "avap.DefinitionEngine";
