//! # avap-guest-vm — the AVAP interpreter
//!
//! A small, sandbox-friendly interpreter for AVAP scripts (see
//! `shared/spec/LANGUAGE.md`). The pipeline, in layers (each uses only the
//! ones before it):
//!
//! `builtins` (the typed command table: [`builtins::Builtin`], its
//! parameters and kinds) -> `tokenizer` -> `ast` -> `parser` -> `catalog`
//! (the live catalog: allowed built-ins, catalog commands written in AVAP,
//! unsupported entries; [`check_catalog_function`]) -> `eval` (the
//! evaluator) and `commands` (the implementations, one `match` arm per
//! `Builtin`), which call each other. The front end, up to `catalog`, never
//! uses `eval` or `commands`. Beside them: `value` (values and JSON),
//! `limits` (the one [`Limits`] struct), `error`, `host` (the capabilities)
//! and, on wasm32 only, `abi` (the only unsafe code: the guest ABI the host
//! calls).
//!
//! The interpreter never panics on any input: it uses no unchecked
//! arithmetic on script data, bounds all recursion, and every resource has a
//! named limit.
//!
//! ```
//! let out = avap_guest_vm::run_json(br#"{"script": "addVar(a, 40)\nb = a + 2\naddResult(b)"}"#);
//! let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
//! assert_eq!(out["result"]["b"], 42);
//! ```

pub mod ast;
pub mod builtins;
pub mod catalog;
pub mod commands;
pub mod error;
pub mod eval;
pub mod host;
pub mod limits;
pub mod parser;
pub mod tokenizer;
pub mod value;

#[cfg(target_arch = "wasm32")]
mod abi;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use catalog::{Catalog, check_catalog_function};
pub use error::{Diagnostic, Error, ErrorKind};
pub use eval::{LogEntry, Outcome, Request, Success};
pub use host::{Capability, Host, NoHost};
pub use limits::Limits;
pub use value::{Map, Value};

/// Version of the wasm ABI (`avap_abi_version`).
pub use avap_abi::ABI_VERSION;
/// Version of this crate (`avap_guest_version`).
pub const GUEST_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The version as stored in the module: a fixed prefix, then
/// [`GUEST_VERSION`]. `avap_guest_version` points into it, so the version is
/// one findable record in the module's data (tools and tests read or patch it
/// without running the module).
pub const GUEST_VERSION_RECORD: &str = concat!("avap-guest-version=", env!("CARGO_PKG_VERSION"));
/// The prefix of [`GUEST_VERSION_RECORD`].
pub const GUEST_VERSION_PREFIX: &str = "avap-guest-version=";

/// Validates a script without running it: `Err` holds every syntax problem.
pub fn check(script: &str) -> Result<(), Vec<Diagnostic>> {
    parser::parse(script).map(|_| ())
}

/// What `mode: "check"` reports about a valid script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The functions the script defines, sorted.
    pub functions: Vec<String>,
    /// Every command name the script calls (built-ins, catalog commands and
    /// unknown names; not control flow, the script's own functions or the
    /// expression built-ins), sorted and deduplicated.
    pub commands: Vec<String>,
    /// The catalog functions whose source is invalid, sorted by name.
    pub catalog_errors: Vec<CatalogError>,
}

/// An invalid catalog function found by `mode: "check"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogError {
    pub name: String,
    pub error: String,
}

/// Validates a script (and every catalog function source) without running
/// anything. Errors are those `execute` reports before running: `syntax`,
/// `input` (empty script) or `limit` (`max_script_bytes`).
pub fn check_script(script: &str, catalog: &Catalog, limits: &Limits) -> Result<CheckReport, Error> {
    let program = parse_script(script, limits)?;
    let mut functions = Vec::new();
    for name in program.functions.keys() {
        catalog::insert_sorted(&mut functions, name.clone());
    }
    let commands = program.called_commands();
    let catalog_errors = catalog_errors(catalog, limits.max_script_bytes);
    Ok(CheckReport { functions, commands, catalog_errors })
}

/// Parses every AVAP command of `catalog` (each is parsed once and kept)
/// and returns those whose source is invalid.
fn catalog_errors(catalog: &Catalog, max_source_bytes: usize) -> Vec<CatalogError> {
    catalog
        .function_names()
        .into_iter()
        .filter_map(|name| match catalog.function(name, max_source_bytes) {
            Some(Err(error)) => Some(CatalogError { name: name.to_string(), error: error.to_string() }),
            _ => None,
        })
        .collect()
}

/// What the input asks for.
use avap_abi::Mode;

/// The input JSON (host -> guest), read by hand from a `serde_json::Value`
/// (derived struct deserializers cost ~35 KB of wasm).
struct Input {
    script: String,
    variables: Map,
    query: Vec<(String, String)>,
    body: Map,
    limits: Limits,
    /// `None`: the input names no catalog (the prepared one, if any, applies).
    catalog: Option<Catalog>,
    mode: Mode,
}

fn object_field(obj: &mut serde_json::Map<String, serde_json::Value>, name: &str) -> Result<Map, Error> {
    match obj.remove(name) {
        None | Some(serde_json::Value::Null) => Ok(Map::new()),
        Some(serde_json::Value::Object(m)) => {
            m.into_iter().map(|(k, v)| Ok((k, Value::from_json(v).map_err(|_| Limits::value_depth_error())?))).collect()
        }
        Some(_) => Err(Error::input(format!("'{name}' must be an object"))),
    }
}

fn parse_input(bytes: &[u8]) -> Result<Input, Error> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::input(format!("invalid input JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = json else {
        return Err(Error::input("the input must be a JSON object"));
    };
    let script = match obj.remove("script") {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(Error::input("'script' must be a string")),
        None => return Err(Error::input("missing field 'script'")),
    };
    let variables = object_field(&mut obj, "variables")?;
    let body = object_field(&mut obj, "body")?;
    let query = match obj.remove("query") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => {
            let mut pairs = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::Array(pair) => match <[serde_json::Value; 2]>::try_from(pair) {
                        Ok([serde_json::Value::String(k), serde_json::Value::String(v)]) => pairs.push((k, v)),
                        _ => {
                            return Err(Error::input("'query' items must be [name, value] string pairs"));
                        }
                    },
                    _ => {
                        return Err(Error::input("'query' items must be [name, value] string pairs"));
                    }
                }
            }
            pairs
        }
        Some(_) => {
            return Err(Error::input("'query' must be a list of [name, value] pairs"));
        }
    };
    let limits = match obj.remove("limits") {
        None | Some(serde_json::Value::Null) => Limits::default(),
        Some(serde_json::Value::Object(m)) => Limits::from_json(m)?,
        Some(_) => return Err(Error::input("'limits' must be an object")),
    };
    let catalog = match obj.remove("catalog") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) => Some(Catalog::from_json(m)?),
        Some(_) => return Err(Error::input("'catalog' must be an object")),
    };
    let mode = match obj.remove("mode") {
        None | Some(serde_json::Value::Null) => Mode::Run,
        Some(serde_json::Value::String(m)) => Mode::from_name(&m)
            .ok_or_else(|| Error::input(format!("unknown mode '{m}' (expected \"run\" or \"check\")")))?,
        Some(_) => return Err(Error::input("'mode' must be a string (\"run\" or \"check\")")),
    };
    if let Some(k) = obj.keys().next() {
        return Err(Error::input(format!("unknown input field '{k}'")));
    }
    Ok(Input { script, variables, query, body, limits, catalog, mode })
}

/// The checks made before anything runs, then the parse.
fn parse_script(script: &str, limits: &Limits) -> Result<ast::Program, Error> {
    if script.len() > limits.max_script_bytes {
        return Err(limits.script_error());
    }
    if script.trim().is_empty() {
        return Err(Error::input("the script is empty"));
    }
    match parser::parse(script) {
        Ok(program) if program.main.is_empty() && program.functions.is_empty() => {
            Err(Error::input("the script is empty (it has no statements)"))
        }
        Ok(program) => Ok(program),
        Err(diags) => Err(Error::syntax(diags)),
    }
}

/// Parses and runs one script with the given request and limits, every
/// built-in command available (no catalog).
pub fn execute(script: &str, request: &Request, limits: &Limits) -> Outcome {
    execute_with_catalog(script, request, limits, &Catalog::default())
}

/// Parses and runs one script against a catalog (see [`catalog`]), with no
/// host: the capability commands fail with a catchable error.
pub fn execute_with_catalog(script: &str, request: &Request, limits: &Limits, catalog: &Catalog) -> Outcome {
    execute_with_host(script, request, limits, catalog, &mut NoHost)
}

/// Parses and runs one script against a catalog, with `host` serving the
/// capability commands (see [`host`]).
pub fn execute_with_host(
    script: &str,
    request: &Request,
    limits: &Limits,
    catalog: &Catalog,
    host: &mut dyn Host,
) -> Outcome {
    match parse_script(script, limits) {
        Ok(program) => eval::execute_with_host(&program, request, limits, catalog, host),
        Err(e) => Outcome { result: Err(e), logs: Vec::new(), logs_truncated: false },
    }
}

#[derive(Serialize)]
struct SuccessOut<'a> {
    ok: bool,
    status: u16,
    result: &'a Map,
    variables: &'a Map,
    logs: &'a [LogEntry],
    logs_truncated: bool,
}

#[derive(Serialize)]
struct CheckOut<'a> {
    ok: bool,
    mode: Mode,
    functions: &'a [String],
    commands: &'a [String],
    #[serde(skip_serializing_if = "<[CatalogError]>::is_empty")]
    catalog_errors: &'a [CatalogError],
}

/// Turns the result of [`check_script`] into the output JSON.
pub fn check_json(report: &Result<CheckReport, Error>, limits: &Limits) -> Vec<u8> {
    let cap = limits.max_output_bytes;
    match report {
        Ok(r) => {
            let out = CheckOut {
                ok: true,
                mode: Mode::Check,
                functions: &r.functions,
                commands: &r.commands,
                catalog_errors: &r.catalog_errors,
            };
            value::to_json_capped(&out, cap).unwrap_or_else(|_| small_error(&limits.output_error()))
        }
        Err(e) => failure_json(e, &[], false, cap),
    }
}

#[derive(Serialize)]
struct FailureOut<'a> {
    ok: bool,
    kind: ErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'static str>,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "<[Diagnostic]>::is_empty")]
    diagnostics: &'a [Diagnostic],
    logs: &'a [LogEntry],
    logs_truncated: bool,
}

fn failure_json(e: &Error, logs: &[LogEntry], logs_truncated: bool, cap: usize) -> Vec<u8> {
    let out = FailureOut {
        ok: false,
        kind: e.kind,
        limit: e.limit,
        error: e.to_string(),
        line: e.line,
        diagnostics: &e.diagnostics,
        logs,
        logs_truncated,
    };
    value::to_json_capped(&out, cap).unwrap_or_else(|_| small_error(&Limits::default().output_error_for(cap)))
}

/// A minimal error output that always fits.
fn small_error(e: &Error) -> Vec<u8> {
    let out = FailureOut {
        ok: false,
        kind: e.kind,
        limit: e.limit,
        error: e.to_string(),
        line: e.line,
        diagnostics: &[],
        logs: &[],
        logs_truncated: false,
    };
    serde_json::to_vec(&out).unwrap_or_else(|_| br#"{"ok":false,"kind":"limit","error":"output error"}"#.to_vec())
}

/// Turns an [`Outcome`] into the output JSON, within `max_output_bytes`.
pub fn outcome_json(outcome: &Outcome, limits: &Limits) -> Vec<u8> {
    let cap = limits.max_output_bytes;
    match &outcome.result {
        Ok(s) => {
            let out = SuccessOut {
                ok: true,
                status: s.status,
                result: &s.result,
                variables: &s.variables,
                logs: &outcome.logs,
                logs_truncated: outcome.logs_truncated,
            };
            value::to_json_capped(&out, cap).unwrap_or_else(|_| small_error(&limits.output_error()))
        }
        Err(e) => failure_json(e, &outcome.logs, outcome.logs_truncated, cap),
    }
}

/// Runs one execution. `input` is the UTF-8 JSON input
/// (`{"script", "variables"?, "query"?, "body"?, "limits"?, "catalog"?,
/// "mode"?}`); returns the UTF-8 JSON output (`{"ok": true, "status",
/// "result", "variables", "logs", "logs_truncated"}` or `{"ok": false,
/// "kind", "error", "line"?, "diagnostics"?, "logs", "logs_truncated"}`;
/// with `"mode": "check"`, `{"ok": true, "mode": "check", "functions",
/// "commands", "catalog_errors"?}` or the failure). Never panics.
///
/// Natively there is no host ([`NoHost`]); the wasm build uses the host's
/// `avap` imports.
pub fn run_json(input: &[u8]) -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    let mut host = abi::WasmHost;
    #[cfg(not(target_arch = "wasm32"))]
    let mut host = NoHost;
    run_json_with_host(input, &mut host)
}

/// [`run_json`] with `host` serving the capability commands.
pub fn run_json_with_host(input: &[u8], host: &mut dyn Host) -> Vec<u8> {
    let input = match parse_input(input) {
        Ok(i) => i,
        Err(e) => return small_error(&e),
    };
    let limits = input.limits;
    let unrestricted = Catalog::default();
    let catalog = match (&input.catalog, prepared()) {
        (Some(own), _) => own,
        (None, Some(prepared)) => prepared,
        (None, None) => &unrestricted,
    };
    if input.mode == Mode::Check {
        return check_json(&check_script(&input.script, catalog, &limits), &limits);
    }
    let request = Request { variables: input.variables, query: input.query, body: input.body };
    let outcome = execute_with_host(&input.script, &request, &limits, catalog, host);
    outcome_json(&outcome, &limits)
}

#[derive(Serialize)]
struct PrepareOut<'a> {
    ok: bool,
    functions: usize,
    #[serde(skip_serializing_if = "<[CatalogError]>::is_empty")]
    catalog_errors: &'a [CatalogError],
}

thread_local! {
    /// The catalog [`prepare_json`] installed: parsed once, kept for the
    /// life of the instance (and, in a snapshot of it, of every instance).
    static PREPARED: std::cell::Cell<Option<&'static Catalog>> = const { std::cell::Cell::new(None) };
}

/// The prepared catalog, if any.
pub fn prepared() -> Option<&'static Catalog> {
    PREPARED.with(std::cell::Cell::get)
}

/// Prepares the instance for executions: `input` is
/// `{"catalog": {...}}` (the input's `catalog`, docs/ABI.md). The catalog is
/// read and every AVAP command in it parsed now; executions whose input
/// names no catalog use it. The host calls this once, then snapshots the
/// instance, so every execution starts with the catalog ready. Returns
/// `{"ok": true, "functions": N}` (plus `"catalog_errors": [{"name",
/// "error"}]` for AVAP commands whose source is invalid) or a failure
/// document.
pub fn prepare_json(input: &[u8]) -> Vec<u8> {
    let prepared = (|| {
        let json: serde_json::Value =
            serde_json::from_slice(input).map_err(|e| Error::input(format!("invalid input JSON: {e}")))?;
        let serde_json::Value::Object(mut obj) = json else {
            return Err(Error::input("the input must be a JSON object"));
        };
        let catalog = match obj.remove("catalog") {
            Some(serde_json::Value::Object(m)) => Catalog::from_json(m)?,
            _ => return Err(Error::input("'catalog' must be an object")),
        };
        if let Some(k) = obj.keys().next() {
            return Err(Error::input(format!("unknown input field '{k}'")));
        }
        Ok(catalog)
    })();
    match prepared {
        Ok(catalog) => {
            // Every command parsed now, before the snapshot: no execution
            // parses one again.
            let errors = catalog_errors(&catalog, Limits::default().max_script_bytes);
            let answer = PrepareOut { ok: true, functions: catalog.function_names().len(), catalog_errors: &errors };
            let out = serde_json::to_vec(&answer)
                .unwrap_or_else(|_| br#"{"ok":false,"kind":"limit","error":"output error"}"#.to_vec());
            PREPARED.with(|p| p.set(Some(Box::leak(Box::new(catalog)))));
            out
        }
        Err(e) => small_error(&e),
    }
}

impl Limits {
    fn output_error_for(&self, cap: usize) -> Error {
        Error::limit(avap_abi::OUTPUT_LIMIT, cap)
    }
}
