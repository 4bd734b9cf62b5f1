//! The whole interpreter (`run_json`, no host) on arbitrary script text under
//! small limits: never panics, and the output is always a JSON object with a
//! boolean `ok`, no larger than `max_output_bytes` plus a small margin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const MAX_OUTPUT: usize = 65536;
/// What the output may exceed `max_output_bytes` by (the small error that
/// replaces an oversized output).
const MARGIN: usize = 4096;

fn input(script: &str, check: bool) -> Vec<u8> {
    let mut doc = json!({
        "script": script,
        "limits": {
            "max_steps": 20000,
            "max_loop_iterations": 2000,
            "max_string_bytes": 65536,
            "max_collection_len": 1000,
            "max_output_bytes": MAX_OUTPUT,
            "max_call_depth": 16,
        },
    });
    if check {
        doc["mode"] = json!("check");
    }
    serde_json::to_vec(&doc).expect("input document serializes")
}

fn run(script: &str, check: bool) {
    let out = avap_guest_vm::run_json(&input(script, check));
    let what = if check { "check" } else { "run" };
    assert!(out.len() <= MAX_OUTPUT + MARGIN, "{what}: output of {} bytes", out.len());
    let doc: Value = match serde_json::from_slice(&out) {
        Ok(v) => v,
        Err(e) => panic!("{what}: output is not JSON ({e}): {}", String::from_utf8_lossy(&out)),
    };
    let Value::Object(obj) = &doc else { panic!("{what}: output is not an object: {doc}") };
    assert!(matches!(obj.get("ok"), Some(Value::Bool(_))), "{what}: output without a boolean `ok`: {doc}");
}

fn body(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    run(&text, false);
    if std::str::from_utf8(data).is_ok() && data.len() < 4096 {
        run(&text, true);
    }
}

fuzz_target!(|data: &[u8]| {
    // The interpreter recurses (bounded by its own limits); libFuzzer's main
    // thread stack may be smaller than what those bounds assume natively.
    let data = data.to_vec();
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || body(&data))
        .expect("spawn fuzz thread");
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
});
