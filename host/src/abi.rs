//! The guest ABI, host side: everything a guest module may import, what it
//! must export, and the check that refuses any module that steps outside
//! that. `docs/ABI.md` is the prose version of this file; keep them together.
//!
//! A guest module reaches the outside world only through its imports. The
//! host links nothing but the WASI preview-1 functions below and the `avap`
//! capability functions of [`crate::capability`] (HTTP and database, each
//! granted per deployment). The WASI context it builds for each execution
//! grants nothing: no preopened directories, no environment, no arguments,
//! stdin closed, stdout/stderr into capped in-memory pipes. Clock and
//! randomness are the host's.

use wasmtime::{ExternType, FuncType, Module, ValType};

/// The ABI version this host speaks. A module whose `avap_abi_version()`
/// returns anything else is refused.
pub const ABI_VERSION: i32 = 1;

/// WASI preview-1 functions a guest may import, with why each is harmless
/// under the empty WASI context the host builds.
pub const ALLOWED_WASI_IMPORTS: &[(&str, &str)] = &[
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

/// The WASI module name of preview 1.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Exports the host calls, with their signatures.
///
/// - `avap_abi_version() -> i32`: must return [`ABI_VERSION`].
/// - `avap_guest_version() -> i64`: `(ptr << 32) | len` of a UTF-8 version string
///   (semver) in guest memory.
/// - `avap_alloc(len: i32) -> i32`: a guest-owned buffer of `len` bytes for the
///   input, or 0 on failure.
/// - `avap_run(ptr: i32, len: i32) -> i64`: runs the JSON input in the buffer
///   (the guest takes it back), returns `(ptr << 32) | len` of the JSON output,
///   which stays valid until the instance is dropped.
/// - `memory`: the guest's one linear memory.
pub const EXPORT_ABI_VERSION: &str = "avap_abi_version";
pub const EXPORT_GUEST_VERSION: &str = "avap_guest_version";
pub const EXPORT_ALLOC: &str = "avap_alloc";
pub const EXPORT_RUN: &str = "avap_run";
/// Optional: `avap_prepare(ptr: i32, len: i32) -> i64`, like `avap_run` but
/// with `{"catalog": {...}}`; the host calls it once before it snapshots the
/// guest (see [`crate::sandbox::SandboxEngine::prepare`]).
pub const EXPORT_PREPARE: &str = "avap_prepare";
pub const EXPORT_MEMORY: &str = "memory";
/// WASI reactor initialiser; called once per instance when present.
pub const EXPORT_INITIALIZE: &str = "_initialize";

/// Why a module was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AbiError {
    #[error("module imports `{module}::{name}`, which is not on the host's allow-list")]
    ForbiddenImport { module: String, name: String },
    #[error("module does not export `{0}`")]
    MissingExport(&'static str),
    #[error("export `{name}` has the wrong type: expected {expected}")]
    WrongExportType { name: &'static str, expected: &'static str },
    #[error("module speaks ABI version {found}, the host speaks {expected}")]
    AbiVersion { found: i32, expected: i32 },
    #[error("module's version string is not valid: {0}")]
    BadVersion(String),
}

/// Checks a compiled module's imports against the allow-list and its exports
/// against the ABI, before it is ever instantiated.
pub fn check_module(module: &Module) -> Result<(), AbiError> {
    for import in module.imports() {
        let allowed = matches!(import.ty(), ExternType::Func(_))
            && match import.module() {
                WASI_MODULE => ALLOWED_WASI_IMPORTS.iter().any(|(name, _)| *name == import.name()),
                crate::capability::IMPORT_MODULE => {
                    crate::capability::IMPORTS.iter().any(|(name, _)| *name == import.name())
                }
                _ => false,
            };
        if !allowed {
            return Err(AbiError::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    expect_func(module, EXPORT_ABI_VERSION, &[], &[ValType::I32], "() -> i32")?;
    expect_func(module, EXPORT_GUEST_VERSION, &[], &[ValType::I64], "() -> i64")?;
    expect_func(module, EXPORT_ALLOC, &[ValType::I32], &[ValType::I32], "(i32) -> i32")?;
    expect_func(module, EXPORT_RUN, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
    if let Some(init) = module.get_export(EXPORT_INITIALIZE) {
        check_signature(init, EXPORT_INITIALIZE, &[], &[], "() -> ()")?;
    }
    if let Some(prepare) = module.get_export(EXPORT_PREPARE) {
        check_signature(prepare, EXPORT_PREPARE, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
    }
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => Ok(()),
        Some(_) => Err(AbiError::WrongExportType { name: EXPORT_MEMORY, expected: "one unshared 32-bit memory" }),
        None => Err(AbiError::MissingExport(EXPORT_MEMORY)),
    }
}

fn expect_func(
    module: &Module,
    name: &'static str,
    params: &[ValType],
    results: &[ValType],
    expected: &'static str,
) -> Result<(), AbiError> {
    let ty = module.get_export(name).ok_or(AbiError::MissingExport(name))?;
    check_signature(ty, name, params, results, expected)
}

fn check_signature(
    ty: ExternType,
    name: &'static str,
    params: &[ValType],
    results: &[ValType],
    expected: &'static str,
) -> Result<(), AbiError> {
    let wrong = AbiError::WrongExportType { name, expected };
    let ExternType::Func(f) = ty else { return Err(wrong) };
    if same_types(&f, params, results) { Ok(()) } else { Err(wrong) }
}

fn same_types(f: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: ValType, b: &ValType| ValType::eq(&a, b);
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| eq(a, b))
        && f.results().zip(results).all(|(a, b)| eq(a, b))
}

/// Splits an `(ptr << 32) | len` pair returned by the guest. Both halves are
/// untrusted: callers bound-check them against memory before reading.
pub fn unpack_ptr_len(packed: i64) -> (usize, usize) {
    let bits = packed as u64;
    ((bits >> 32) as usize, (bits & 0xffff_ffff) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine};

    fn module(wat: &str) -> Module {
        let engine = Engine::new(&Config::new()).expect("engine");
        Module::new(&engine, wat).expect("valid wat")
    }

    const GOOD_EXPORTS: &str = r#"
        (memory (export "memory") 1)
        (func (export "avap_abi_version") (result i32) i32.const 1)
        (func (export "avap_guest_version") (result i64) i64.const 0)
        (func (export "avap_alloc") (param i32) (result i32) i32.const 0)
        (func (export "avap_run") (param i32 i32) (result i64) i64.const 0)
    "#;

    #[test]
    fn accepts_a_module_that_keeps_to_the_abi() {
        let m = module(&format!(
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {GOOD_EXPORTS})"#
        ));
        assert_eq!(check_module(&m), Ok(()));
        let m = module(&format!(
            r#"(module (import "avap" "http_request" (func (param i32 i32) (result i32)))
                       (import "avap" "db_query" (func (param i32 i32) (result i32)))
                       (import "avap" "reply_read" (func (param i32 i32) (result i32))) {GOOD_EXPORTS})"#
        ));
        assert_eq!(check_module(&m), Ok(()));
    }

    #[test]
    fn refuses_imports_off_the_allow_list() {
        for (module_name, name) in [
            ("wasi_snapshot_preview1", "path_open"),
            ("wasi_snapshot_preview1", "sock_accept"),
            ("env", "system"),
            ("avap", "exec"),
            ("avap", "fs_open"),
        ] {
            let m = module(&format!(r#"(module (import "{module_name}" "{name}" (func)) {GOOD_EXPORTS})"#));
            assert_eq!(
                check_module(&m),
                Err(AbiError::ForbiddenImport { module: module_name.into(), name: name.into() })
            );
        }
    }

    #[test]
    fn refuses_missing_or_mistyped_exports() {
        let m = module(r#"(module (memory (export "memory") 1))"#);
        assert_eq!(check_module(&m), Err(AbiError::MissingExport(EXPORT_ABI_VERSION)));
        let m2 = module(&format!(
            "(module {})",
            GOOD_EXPORTS.replace("(param i32 i32) (result i64)", "(param i32) (result i64)")
        ));
        assert!(matches!(check_module(&m2), Err(AbiError::WrongExportType { name: EXPORT_RUN, .. })));
    }

    #[test]
    fn unpacks_pointer_and_length() {
        assert_eq!(unpack_ptr_len((7i64 << 32) | 9), (7, 9));
        assert_eq!(unpack_ptr_len(-1), (0xffff_ffff, 0xffff_ffff));
    }
}

/// The input document the host writes into the guest (docs/ABI.md). Every
/// piece from the client is raw JSON text, copied through.
#[derive(serde::Serialize)]
pub struct GuestInput<'a> {
    pub script: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<&'a serde_json::value::RawValue>,
    /// The query string's pairs, in order.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub query: &'a [(String, String)],
    /// The request body's top-level keys other than `script` and `variables`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<RawFields<'a>>,
    /// What the live catalog holds; absent: every built-in command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<&'a serde_json::value::RawValue>,
    /// `run` (default) or `check` (parse and validate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

/// The fields of a JSON object as raw text, written back as they came.
#[derive(Clone, Copy)]
pub struct RawFields<'a>(pub &'a [(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)]);

impl serde::Serialize for RawFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

impl<'a> GuestInput<'a> {
    /// A document without request data, run against the full built-in
    /// command set (self-tests, validation).
    pub fn bare(script: &'a str, mode: Option<&'static str>) -> Self {
        GuestInput { script, variables: None, query: &[], body: None, catalog: None, mode }
    }
}
