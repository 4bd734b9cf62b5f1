//! The contract between `avap-host` and the guest interpreter, in one place:
//! the ABI version, every export the host calls and every import it links
//! (names and signatures), how pointers and lengths travel, the caps both
//! sides enforce with the same numbers, and the small enums both sides speak
//! ([`Capability`], [`ErrorKind`], [`Mode`]). With the `serde` feature,
//! [`wire`] holds the documents that cross the boundary.
//!
//! Without features this crate depends on nothing, so the guest (wasm32)
//! and the host read the same constants. `docs/ABI.md` is written from this
//! file; a test of the host checks that every name here appears there.

#![cfg_attr(not(any(test, feature = "serde")), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "serde")]
pub mod wire;

/// The ABI version: `avap_abi_version()` returns it, and the host refuses a
/// module that answers anything else.
pub const ABI_VERSION: i32 = 1;

// ---------------------------------------------------------------------------
// Functions across the boundary

/// A wasm value type in an ABI signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
}

impl ValType {
    pub const fn name(self) -> &'static str {
        match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
        }
    }
}

/// One function of the ABI: its name and signature, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Func {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    pub doc: &'static str,
}

impl core::fmt::Display for Func {
    /// `name(i32, i32) -> i64`
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)?;
        write_types(f, self.params)?;
        f.write_str(" -> ")?;
        write_results(f, self.results)
    }
}

impl Func {
    /// The signature alone: `(i32, i32) -> i64`.
    pub fn signature(&self) -> Signature {
        Signature(*self)
    }
}

/// The signature of a [`Func`], displayed as `(i32) -> i32`.
pub struct Signature(Func);

impl core::fmt::Display for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write_types(f, self.0.params)?;
        f.write_str(" -> ")?;
        write_results(f, self.0.results)
    }
}

/// One result bare (`i64`), none or several in parentheses.
fn write_results(f: &mut core::fmt::Formatter<'_>, types: &[ValType]) -> core::fmt::Result {
    match types {
        [one] => f.write_str(one.name()),
        _ => write_types(f, types),
    }
}

fn write_types(f: &mut core::fmt::Formatter<'_>, types: &[ValType]) -> core::fmt::Result {
    f.write_str("(")?;
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(t.name())?;
    }
    f.write_str(")")
}

use ValType::{I32, I64};

/// What a guest module exports for the host.
pub mod export {
    use super::{Func, I32, I64};

    pub const ABI_VERSION: Func = Func {
        name: "avap_abi_version",
        params: &[],
        results: &[I32],
        doc: "returns the ABI version the module speaks; the host refuses any but its own",
    };
    pub const GUEST_VERSION: Func = Func {
        name: "avap_guest_version",
        params: &[],
        results: &[I64],
        doc: "the packed pointer and length of the module's version (UTF-8 semver) in its memory",
    };
    pub const ALLOC: Func = Func {
        name: "avap_alloc",
        params: &[I32],
        results: &[I32],
        doc: "a guest-owned buffer of `len` bytes for the input, or 0 (negative, over MAX_INPUT_BYTES, or no memory)",
    };
    pub const RUN: Func = Func {
        name: "avap_run",
        params: &[I32, I32],
        results: &[I64],
        doc: "runs the input document in the buffer avap_alloc returned (taken back); \
              returns the packed output document, valid until the instance is dropped",
    };
    /// Optional.
    pub const PREPARE: Func = Func {
        name: "avap_prepare",
        params: &[I32, I32],
        results: &[I64],
        doc: "optional: installs the catalog document in the buffer for the life of the instance, \
              before the host snapshots it; returns a packed answer document",
    };
    /// Optional: the WASI reactor initialiser.
    pub const INITIALIZE: Func = Func {
        name: "_initialize",
        params: &[],
        results: &[],
        doc: "optional: the WASI reactor initialiser, called once per instance before anything else",
    };
    /// The guest's one linear memory (32-bit, unshared).
    pub const MEMORY: &str = "memory";

    /// Every export the host requires.
    pub const REQUIRED: [Func; 4] = [ABI_VERSION, GUEST_VERSION, ALLOC, RUN];
    /// Exports the host calls when present (checked against these
    /// signatures when they are).
    pub const OPTIONAL: [Func; 2] = [PREPARE, INITIALIZE];
}

/// What a guest module may import.
pub mod import {
    use super::{Capability, Func, I32};

    /// The import module of the capability functions.
    pub const MODULE: &str = "avap";

    pub const HTTP_REQUEST: Func = Func {
        name: "http_request",
        params: &[I32, I32],
        results: &[I32],
        doc: "capability `http`: hands the host an HTTP request document; returns the length of its reply",
    };
    pub const DB_QUERY: Func = Func {
        name: "db_query",
        params: &[I32, I32],
        results: &[I32],
        doc: "capability `db`: hands the host one SQL statement with bound parameters; returns the length of its reply",
    };
    pub const REPLY_READ: Func = Func {
        name: "reply_read",
        params: &[I32, I32],
        results: &[I32],
        doc: "copies the pending reply (its exact length) into guest memory; returns 0",
    };

    /// Every function of [`MODULE`], in the order the host links them.
    pub const ALL: [Func; 3] = [HTTP_REQUEST, DB_QUERY, REPLY_READ];

    /// The function a capability is called through.
    pub const fn of(capability: Capability) -> Func {
        match capability {
            Capability::Http => HTTP_REQUEST,
            Capability::Db => DB_QUERY,
        }
    }

    /// The WASI preview-1 module name.
    pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

    /// WASI preview-1 functions a guest may import, with why each is
    /// harmless: the host implements exactly these (host/src/runtime/wasi.rs),
    /// with no preopened directory, no environment, no argument, stdin
    /// closed, stdout and stderr into capped in-memory buffers.
    pub const WASI: [(&str, &str); 15] = [
        ("args_get", "no arguments are granted: returns an empty list"),
        ("args_sizes_get", "no arguments are granted: returns zero"),
        ("environ_get", "no environment is granted: returns an empty list"),
        ("environ_sizes_get", "no environment is granted: returns zero"),
        ("clock_res_get", "the host's clocks, read only"),
        ("clock_time_get", "the host's clocks, read only (command timings)"),
        ("random_get", "the host's secure random source"),
        ("fd_write", "fds 1 and 2 only: capped in-memory pipes, surfaced as logs"),
        ("fd_close", "only stdio exists to close"),
        ("fd_fdstat_get", "stat of stdio only"),
        ("fd_seek", "stdio is not seekable: always an error"),
        ("fd_prestat_get", "no directories are preopened: always EBADF"),
        ("fd_prestat_dir_name", "no directories are preopened: always EBADF"),
        ("proc_exit", "ends this execution only (a trap for the host)"),
        ("sched_yield", "a no-op"),
    ];

    /// Whether `module::name` is on the import allow-list.
    pub fn is_allowed(module: &str, name: &str) -> bool {
        match module {
            MODULE => ALL.iter().any(|f| f.name == name),
            WASI_MODULE => WASI.iter().any(|(n, _)| *n == name),
            _ => false,
        }
    }
}

/// `(ptr << 32) | len`, how a function returns a range of guest memory.
pub const fn pack(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}

/// The `(ptr, len)` of a packed range. Both halves are untrusted: the host
/// checks them against the memory before it reads.
pub const fn unpack(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, (bits & 0xffff_ffff) as u32)
}

// ---------------------------------------------------------------------------
// Caps both sides enforce

/// Largest input document `avap_alloc` accepts, in bytes. The host's own
/// input cap (the request body plus an envelope) must stay below it.
pub const MAX_INPUT_BYTES: usize = 16 << 20;

/// The wasm stack the host gives each execution (wasmtime's
/// `max_wasm_stack`), in bytes.
pub const GUEST_STACK_BYTES: usize = 1 << 20;

/// The guest evaluator's deepest native recursion (nested blocks,
/// expression nodes and calls, summed over the call stack). Calibrated so
/// that a script at this depth fits in [`GUEST_STACK_BYTES`]: past it the
/// guest answers a `limit` error naming `max_eval_depth` instead of the
/// host stopping it on a stack overflow. Change both together, and run the
/// host's deep-nesting tests.
pub const MAX_EVAL_DEPTH: u32 = 1000;

/// Deepest nesting of arrays and objects in any JSON document that crosses
/// the boundary: the request body, the guest's input and output documents,
/// and capability requests and replies. The host refuses a deeper request
/// body (400) before the guest runs, and treats a deeper output document as
/// a guest fault (502).
pub const MAX_JSON_DEPTH: u32 = 100;

/// How many levels of [`MAX_JSON_DEPTH`] the documents themselves use around
/// a script's values (the output document `{"result": {"name": VALUE}}`
/// puts a value's outermost container at level 3).
pub const ENVELOPE_DEPTH: u32 = 4;

/// Deepest nesting of lists and dicts a script value may have. Any value the
/// guest builds, reads from the request or parses from text (JSON bodies,
/// `variableFromJSON`, database rows) is refused past it with a `limit`
/// error, so every output document stays within [`MAX_JSON_DEPTH`].
pub const MAX_VALUE_DEPTH: u32 = MAX_JSON_DEPTH - ENVELOPE_DEPTH;

/// Largest capability request document a guest may hand over, in bytes.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Largest capability reply document the host hands back, in bytes; a larger
/// reply becomes an error reply. It also bounds what one database row may
/// cost the host.
pub const MAX_REPLY_BYTES: usize = 8 << 20;

/// Longest error message in a capability reply, in bytes. Messages carry
/// what a server or a database said, which can echo what the script sent;
/// past this they are cut.
pub const MAX_ERROR_BYTES: usize = 4096;

/// The HTTP statuses a script may set with `_status`: `200..=599`. 1xx are
/// protocol signals (a `101` would switch protocols) and are never a
/// script's answer.
pub const MIN_SCRIPT_STATUS: u16 = 200;
/// See [`MIN_SCRIPT_STATUS`].
pub const MAX_SCRIPT_STATUS: u16 = 599;

/// The name of the guest limit on its output document; the host sets it to
/// its own output cap in every input, and maps a failure naming it to its
/// own `output_too_large` outcome.
pub const OUTPUT_LIMIT: &str = "max_output_bytes";

// A value at its deepest fits any document; a request fits a reply.
const _: () = assert!(MAX_VALUE_DEPTH + ENVELOPE_DEPTH <= MAX_JSON_DEPTH);
const _: () = assert!(MAX_REQUEST_BYTES <= MAX_REPLY_BYTES);
const _: () = assert!(MAX_ERROR_BYTES < MAX_REPLY_BYTES);

/// Whether `status` is one a script may answer with.
pub const fn is_script_status(status: u16) -> bool {
    status >= MIN_SCRIPT_STATUS && status <= MAX_SCRIPT_STATUS
}

// ---------------------------------------------------------------------------
// What both sides name

/// A capability the host may grant: each is one import of [`import::MODULE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Capability {
    /// Outbound HTTP (`RequestGet`, `RequestPost`).
    Http,
    /// The host's database (`ormDirect`).
    Db,
}

impl Capability {
    pub const ALL: [Capability; 2] = [Capability::Http, Capability::Db];

    /// The name operators grant it by (`AVAP_CAPABILITIES`).
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::Db => "db",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The import the guest calls it through.
    pub const fn import(self) -> Func {
        import::of(self)
    }
}

impl core::str::FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(name: &str) -> Result<Self, UnknownCapability> {
        Capability::from_name(name.trim()).ok_or(UnknownCapability)
    }
}

/// A capability name that is none of [`Capability::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCapability;

impl core::fmt::Display for UnknownCapability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown capability (known: http, db)")
    }
}

impl core::fmt::Display for Capability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a script failed: the `kind` of a failed output document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ErrorKind {
    /// The script was rejected before anything ran.
    Syntax,
    /// A statement failed at run time (catchable by `try()`).
    Runtime,
    /// A resource limit was exceeded (never catchable by `try()`).
    Limit,
    /// The input document was malformed.
    Input,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [ErrorKind::Syntax, ErrorKind::Runtime, ErrorKind::Limit, ErrorKind::Input];

    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::Runtime => "runtime",
            ErrorKind::Limit => "limit",
            ErrorKind::Input => "input",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What an input document asks of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Mode {
    /// Parse, validate and run the script.
    #[default]
    Run,
    /// Parse and validate only; report the functions and commands.
    Check,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Check => "check",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Mode::Run, Mode::Check].into_iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_statuses_exclude_informational_ones() {
        assert!(!is_script_status(101));
        assert!(!is_script_status(199));
        assert!(is_script_status(200));
        assert!(is_script_status(599));
        assert!(!is_script_status(600));
    }

    #[test]
    fn packing_round_trips_and_keeps_halves_unsigned() {
        assert_eq!(unpack(pack(7, 9)), (7, 9));
        assert_eq!(unpack(pack(u32::MAX, u32::MAX)), (u32::MAX, u32::MAX));
        assert_eq!(pack(u32::MAX, 0) >> 32, -1, "the pointer half lives in the sign bits");
        assert_eq!(unpack(-1), (u32::MAX, u32::MAX));
    }

    #[test]
    fn signatures_display_as_in_the_docs() {
        assert_eq!(export::RUN.to_string(), "avap_run(i32, i32) -> i64");
        assert_eq!(export::INITIALIZE.signature().to_string(), "() -> ()");
    }

    #[test]
    fn names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
            assert!(import::is_allowed(import::MODULE, c.import().name));
        }
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(k.name()), Some(k));
        }
        assert_eq!(Mode::from_name("check"), Some(Mode::Check));
        assert_eq!(Capability::from_name("fs"), None);
        assert!(!import::is_allowed("env", "system"));
        assert!(!import::is_allowed(import::WASI_MODULE, "path_open"));
    }
}
