//! `avap-lang`: tooling over AVAP source that needs only the interpreter's
//! front end (`avap-guest-vm`'s parser, run natively: the same code the
//! guest module runs in the sandbox), never wasmtime. The `avap` binary
//! (`cli/`) puts it on the command line; nothing here runs a script.
//!
//! - [`diagnostics`]: every problem of a file, with its range, as `avap
//!   check` prints it and the language server publishes it.
//! - [`reference`]: the 27 standard commands' parameters and descriptions,
//!   and the catalog folder's commands, for completion and hover.
//! - [`fmt`]: the canonical layout (`avap fmt`).
//! - [`lsp`]: the language server (`avap lsp`).

#![forbid(unsafe_code)]

pub mod diagnostics;
pub mod fmt;
pub mod lsp;
pub mod reference;
