//! The guest ABI, host side: the check that refuses any module that steps
//! outside the contract of [`avap_abi`] (its imports, exports and
//! signatures), and the input document the host writes. `docs/ABI.md` is
//! the prose version of the contract.
//!
//! A guest module reaches the outside world only through its imports. The
//! host links nothing but the WASI preview-1 functions of
//! [`avap_abi::import::WASI`] and the `avap` capability functions of
//! [`crate::capability`] (HTTP and database, each granted per deployment).
//! The WASI functions are the host's own ([`super::wasi`]) and grant
//! nothing: no preopened directories, no environment, no arguments, stdin
//! closed, stdout/stderr into capped in-memory buffers. Clock and
//! randomness are the host's.

use avap_abi::{Func, export, import};
use wasmtime::{ExternType, FuncType, Module, ValType};

pub use avap_abi::ABI_VERSION;

/// Why a module was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AbiError {
    #[error("module imports `{module}::{name}`, which is not on the host's allow-list")]
    ForbiddenImport { module: String, name: String },
    #[error("module does not export `{0}`")]
    MissingExport(&'static str),
    #[error("export `{name}` has the wrong type: expected {expected}")]
    WrongExportType { name: &'static str, expected: String },
    #[error("module speaks ABI version {found}, the host speaks {expected}")]
    AbiVersion { found: i32, expected: i32 },
    #[error("module's version string is not valid: {0}")]
    BadVersion(String),
}

/// Checks a compiled module's imports against the allow-list and its exports
/// against the ABI, before it is ever instantiated.
pub fn check_module(module: &Module) -> Result<(), AbiError> {
    for i in module.imports() {
        if !matches!(i.ty(), ExternType::Func(_)) || !import::is_allowed(i.module(), i.name()) {
            return Err(AbiError::ForbiddenImport { module: i.module().to_string(), name: i.name().to_string() });
        }
    }
    for func in export::REQUIRED {
        let ty = module.get_export(func.name).ok_or(AbiError::MissingExport(func.name))?;
        check_signature(ty, &func)?;
    }
    for func in export::OPTIONAL {
        if let Some(ty) = module.get_export(func.name) {
            check_signature(ty, &func)?;
        }
    }
    match module.get_export(export::MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => Ok(()),
        Some(_) => {
            Err(AbiError::WrongExportType { name: export::MEMORY, expected: "one unshared 32-bit memory".into() })
        }
        None => Err(AbiError::MissingExport(export::MEMORY)),
    }
}

fn check_signature(ty: ExternType, func: &Func) -> Result<(), AbiError> {
    let wrong = || AbiError::WrongExportType { name: func.name, expected: func.signature().to_string() };
    let ExternType::Func(f) = ty else { return Err(wrong()) };
    if same_types(&f, func) { Ok(()) } else { Err(wrong()) }
}

fn val_type(t: avap_abi::ValType) -> ValType {
    match t {
        avap_abi::ValType::I32 => ValType::I32,
        avap_abi::ValType::I64 => ValType::I64,
    }
}

fn same_types(f: &FuncType, func: &Func) -> bool {
    let eq = |a: ValType, b: &avap_abi::ValType| ValType::eq(&a, &val_type(*b));
    f.params().len() == func.params.len()
        && f.results().len() == func.results.len()
        && f.params().zip(func.params).all(|(a, b)| eq(a, b))
        && f.results().zip(func.results).all(|(a, b)| eq(a, b))
}

/// Splits an `(ptr << 32) | len` pair returned by the guest. Both halves are
/// untrusted: callers bound-check them against memory before reading.
pub fn unpack_ptr_len(packed: i64) -> (usize, usize) {
    let (ptr, len) = avap_abi::unpack(packed);
    (ptr as usize, len as usize)
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
        assert_eq!(check_module(&m), Err(AbiError::MissingExport(export::ABI_VERSION.name)));
        let m2 = module(&format!(
            "(module {})",
            GOOD_EXPORTS.replace("(param i32 i32) (result i64)", "(param i32) (result i64)")
        ));
        assert!(matches!(check_module(&m2), Err(AbiError::WrongExportType { name: "avap_run", ref expected })
            if expected == "(i32, i32) -> i64"));
    }

    /// docs/ABI.md is written from `avap_abi`: each of its export and
    /// import rows gives the same signature, and the WASI allow-list is all
    /// there.
    #[test]
    fn the_abi_document_names_every_import_and_export() {
        let doc = include_str!("../../../docs/ABI.md");
        assert!(doc.starts_with(&format!("# The guest ABI (version {ABI_VERSION})")));
        let row = |name: &str| {
            doc.lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/ABI.md has no row for `{name}`"))
        };
        for func in export::REQUIRED.iter().chain(&export::OPTIONAL).chain(&import::ALL) {
            let cell = row(func.name).split('|').nth(2).unwrap_or_default();
            // `(ptr: i32, len: i32) -> i64`, optional: the doc names the parameters.
            let written =
                cell.replace(", optional", "").replace(['`', ' '], "").replace("ptr:", "").replace("len:", "");
            assert_eq!(written, func.signature().to_string().replace(' ', ""), "the row of {}", func.name);
        }
        for (name, _) in import::WASI {
            assert!(doc.contains(&format!("`{name}`")), "docs/ABI.md does not list the WASI import {name}");
        }
        row(export::MEMORY);
    }

    #[test]
    fn unpacks_pointer_and_length() {
        assert_eq!(unpack_ptr_len((7i64 << 32) | 9), (7, 9));
        assert_eq!(unpack_ptr_len(-1), (0xffff_ffff, 0xffff_ffff));
    }
}

pub use avap_abi::Mode;
pub use avap_abi::wire::GuestLimits;

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
    /// `run` (the default) or `check` (parse and validate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The host's caps the guest must keep to.
    pub limits: GuestLimits,
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
    pub fn bare(script: &'a str, mode: Option<Mode>, limits: GuestLimits) -> Self {
        GuestInput { script, variables: None, query: &[], body: None, catalog: None, mode, limits }
    }
}
