//! Unit tests per feature, plus the no-panic property tests.

use serde_json::{Value as J, json};

use crate::{check, run_json};

/// Runs on a thread with a large stack: unoptimised test builds use far
/// bigger frames than the optimised wasm guest (whose 1 MiB stack is
/// checked separately, see README).
fn run_bytes(input: Vec<u8>) -> Vec<u8> {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || run_json(&input))
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
}

fn run_with(input: J) -> J {
    let out = run_bytes(input.to_string().into_bytes());
    serde_json::from_slice(&out).unwrap_or(J::Null)
}

fn run(script: &str) -> J {
    run_with(json!({ "script": script }))
}

/// Runs and expects success; returns `result`.
fn ok(script: &str) -> J {
    let out = run(script);
    assert_eq!(out["ok"], true, "script failed: {script}\n{out}");
    out["result"].clone()
}

fn vars(script: &str) -> J {
    let out = run(script);
    assert_eq!(out["ok"], true, "script failed: {script}\n{out}");
    out["variables"].clone()
}

/// Runs and expects failure of `kind`; returns the error message.
fn fails(script: &str, kind: &str) -> String {
    let out = run(script);
    assert_eq!(out["ok"], false, "script should fail: {script}\n{out}");
    assert_eq!(out["kind"], kind, "{script}\n{out}");
    out["error"].as_str().unwrap_or_default().to_string()
}

fn diags(script: &str) -> Vec<(usize, usize, String)> {
    match check(script) {
        Ok(()) => panic!("script should not parse: {script}"),
        Err(d) => d.into_iter().map(|d| (d.line, d.column, d.message)).collect(),
    }
}

fn eval(expr: &str) -> J {
    vars(&format!("x = {expr}"))["x"].clone()
}

fn out_text(v: &J) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

mod catalog_tests;
mod command_tests;
mod expr_tests;
mod fuzz_tests;
mod limit_tests;
mod outside_tests;
mod parser_tests;
mod stmt_tests;
mod text_time_tests;
mod tokenizer_tests;

#[test]
fn version_record_holds_the_version() {
    assert_eq!(crate::GUEST_VERSION_RECORD, format!("{}{}", crate::GUEST_VERSION_PREFIX, crate::GUEST_VERSION));
}
