//! The language case folders (`../tests/cases/language/<name>/`) run
//! natively through [`avap_guest_vm::run_json`]: one test per folder, no
//! host, no wasm. The host's runner (`tests/cases.rs`) sends the same
//! folders through real HTTP; both compare with the same `expected.json`.
//!
//! A folder holds `script.avap`, `expected.json` (`status` and `body`: the
//! HTTP response the host answers with) and optionally `request.json`
//! (`variables`, `query`, `params`); the format and what is exact are in
//! the `avap-tests` crate docs (`tests/lib.rs`): the status and the whole
//! `result` are exact, the other listed fields of the body contained.
//!
//! The guest's output document becomes the response the host makes of it
//! (host/src/api.rs, docs/ABI.md): `ok: true` is `status` (200 when it
//! gives none) with `success`, `result`, `variables` and `logs`; `ok: false`
//! is 400 with `success: false`, `error`, `kind` (`syntax_error`,
//! `runtime_error`, `limit_error` or `bad_request` for the guest's
//! `syntax`, `runtime`, `limit`, `input`), `line` and `diagnostics` when
//! given. The input is what the host writes: the script, `variables`, the
//! query string as `[name, value]` pairs and `params` as `body`, no limits
//! (the guest's defaults) and no catalog (every built-in command).
//!
//! Run one case by its name: `cargo test -p avap-guest-vm --test cases --
//! template_strings` (a filter that is a whole case name runs that case
//! alone; any other filter, every case whose name contains it). `--
//! --list` lists every case.

use std::path::Path;

use avap_tests::case::{self, Case};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Map, Value, json};

fn main() {
    let mut args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases/language");
    let trials = match case::folders(&root) {
        Ok(dirs) if !dirs.is_empty() => dirs
            .into_iter()
            .map(|dir| Trial::test(case::name_of(&dir), move || run(&dir)).with_kind("language"))
            .collect(),
        Ok(_) => vec![Trial::test("language_folders", || Err("no case folders in tests/cases/language".into()))],
        Err(e) => vec![Trial::test("language_folders", move || Err(e.into()))],
    };
    // A filter that is a case's whole name runs that case alone (not also
    // `cmd_encodemd5_errors` for `cmd_encodemd5`).
    args.exact |= args.filter.as_ref().is_some_and(|f| trials.iter().any(|t| t.name() == f));
    libtest_mimic::run(&args, trials).exit();
}

fn run(dir: &Path) -> Result<(), Failed> {
    let case = Case::load(dir)?;
    let output = run_native(guest_input(&case))?;
    let (status, body) = as_response(&output)?;
    case.check(status, &body, None).map_err(Failed::from)
}

/// The input document the host writes for this request (host/src/abi.rs,
/// `GuestInput`).
fn guest_input(case: &Case) -> Value {
    let mut input = Map::new();
    input.insert("script".into(), json!(case.script));
    if !case.request.variables.is_empty() {
        input.insert("variables".into(), Value::Object(case.request.variables.clone()));
    }
    if let Some(q) = &case.request.query {
        let pairs: Vec<[String; 2]> =
            form_urlencoded::parse(q.as_bytes()).map(|(k, v)| [k.into_owned(), v.into_owned()]).collect();
        if !pairs.is_empty() {
            input.insert("query".into(), json!(pairs));
        }
    }
    if !case.request.params.is_empty() {
        input.insert("body".into(), Value::Object(case.request.params.clone()));
    }
    Value::Object(input)
}

/// Runs on a thread with a large stack: unoptimised test builds use far
/// bigger frames than the optimised wasm guest.
fn run_native(input: Value) -> Result<Value, Failed> {
    let bytes = input.to_string().into_bytes();
    let output = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || avap_guest_vm::run_json(&bytes))
        .map_err(|e| format!("spawning the interpreter's thread: {e}"))?
        .join()
        .map_err(|_| "the interpreter panicked")?;
    serde_json::from_slice(&output).map_err(|e| format!("the output is not JSON ({e}): {output:?}").into())
}

/// The HTTP status and body the host answers with for this output document
/// (host/src/api.rs: `execute`, `script_error`).
fn as_response(output: &Value) -> Result<(u16, Value), Failed> {
    let field = |name: &str| output.get(name).cloned();
    match output.get("ok") {
        Some(Value::Bool(true)) => {
            let status = output
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=999).contains(s))
                .unwrap_or(200);
            let mut body = json!({
                "success": true,
                "result": field("result").unwrap_or_else(|| json!({})),
                "variables": field("variables").unwrap_or_else(|| json!({})),
                "logs": field("logs").unwrap_or_else(|| json!([])),
            });
            if output.get("logs_truncated") == Some(&Value::Bool(true)) {
                body["logs_truncated"] = json!(true);
            }
            Ok((status, body))
        }
        Some(Value::Bool(false)) => {
            let kind = match output.get("kind").and_then(Value::as_str) {
                Some("syntax") => "syntax_error",
                Some("limit") => "limit_error",
                Some("input") => "bad_request",
                _ => "runtime_error",
            };
            let mut body = json!({
                "success": false,
                "error": field("error").unwrap_or_else(|| json!("script failed")),
                "kind": kind,
            });
            for name in ["line", "diagnostics", "logs"] {
                if let Some(value) = field(name) {
                    body[name] = value;
                }
            }
            Ok((400, body))
        }
        _ => Err(format!("not an output document (no boolean `ok`): {output}").into()),
    }
}
