use super::*;

fn limited(script: &str, limits: J) -> J {
    run_with(json!({"script": script, "limits": limits}))
}

fn assert_limit(out: &J, name: &str) {
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(out["kind"], "limit", "{out}");
    assert!(out["error"].as_str().unwrap_or_default().contains(&format!("limit exceeded: {name} (")), "{out}");
}

#[test]
fn loop_iterations() {
    let s = "startLoop(i, 1, 10)\nstartLoop(j, 1, 10)\nx = 1\nendLoop()\nendLoop()";
    assert_eq!(limited(s, json!({"max_loop_iterations": 110}))["ok"], true);
    assert_limit(&limited(s, json!({"max_loop_iterations": 100})), "max_loop_iterations");
    // Not catchable.
    let s = "try()\nstartLoop(i, 1, 1000)\nendLoop()\nexception(e)\nend()";
    assert_limit(&limited(s, json!({"max_loop_iterations": 10})), "max_loop_iterations");
}

#[test]
fn steps() {
    assert_limit(&limited("startLoop(i, 1, 100000)\nx = i * 2\nendLoop()", json!({"max_steps": 1000})), "max_steps");
    assert_limit(&run("startLoop(i, 1, 1000000)\nx = i + i + i + i + i + i + i + i + i + i\nendLoop()"), "max_steps");
}

#[test]
fn string_bytes() {
    let s = "s = \"ab\"\nstartLoop(i, 1, 40)\ns = s + s\nendLoop()";
    assert_limit(&limited(s, json!({"max_string_bytes": 1000})), "max_string_bytes");
    assert_limit(&run(s), "max_string_bytes");
    assert_limit(&limited("s = \"abcdef\"\nt = `${s}${s}`", json!({"max_string_bytes": 10})), "max_string_bytes");
    assert_limit(&limited("s = str([1,2,3,4,5,6,7,8,9,10])", json!({"max_string_bytes": 10})), "max_string_bytes");
}

#[test]
fn collection_len() {
    assert_limit(
        &limited("startLoop(i, 1, 20)\nvariableToList(i, xs)\nendLoop()", json!({"max_collection_len": 10})),
        "max_collection_len",
    );
    assert_limit(&limited("xs = [1,2,3,4,5,6]\nys = xs + xs", json!({"max_collection_len": 10})), "max_collection_len");
    assert_limit(
        &limited("startLoop(i, 1, 20)\nAddvariableToJSON(str(i), i, d)\nendLoop()", json!({"max_collection_len": 10})),
        "max_collection_len",
    );
    assert_limit(&limited("xs = [1,2,3]", json!({"max_collection_len": 2})), "max_collection_len");
}

#[test]
fn value_depth_is_the_hosts_number() {
    use crate::limits::MAX_VALUE_DEPTH;
    // The reviewer's case: 150 wraps is a clear limit error, not an output
    // the host cannot read.
    assert_limit(&run("a = []\nstartLoop(i, 1, 150)\na = [a]\nendLoop()\naddResult(a)"), "max_value_depth");
    // Exactly at the limit is fine and comes out whole.
    let wraps = MAX_VALUE_DEPTH - 1;
    let out = run(&format!("a = []\nstartLoop(i, 1, {wraps})\na = [a]\nendLoop()\naddResult(a)"));
    assert_eq!(out["ok"], true, "{out}");
    // JSON text parsed by the script is held to the same depth.
    let deep = format!("{}1{}", "[".repeat(MAX_VALUE_DEPTH as usize), "]".repeat(MAX_VALUE_DEPTH as usize));
    let ok = run_with(
        json!({"script": "variableFromJSON(t, k, v)\naddResult(v)", "variables": {"t": format!("{{\"k\": {deep}}}")}}),
    );
    assert_eq!(ok["ok"], true, "{ok}");
    let deeper = format!("[{deep}]");
    let out = run_with(
        json!({"script": "variableFromJSON(t, k, v)\naddResult(v)", "variables": {"t": format!("{{\"k\": {deeper}}}")}}),
    );
    assert_limit(&out, "max_value_depth");
}

#[test]
fn value_depth() {
    assert_limit(&run("x = 1\nstartLoop(i, 1, 500)\nx = [x]\nendLoop()"), "max_value_depth");
    assert_limit(&run("startLoop(i, 1, 500)\nvariableToList(x, y)\nx = y\ny = None\nendLoop()"), "max_value_depth");
    // Shared pieces: exponential tree, linear memory; output is capped.
    let out = limited(
        "x = [1]\nstartLoop(i, 1, 60)\nx = [x, x]\nendLoop()\naddResult(x)",
        json!({"max_output_bytes": 100000}),
    );
    assert_limit(&out, "max_output_bytes");
    // Comparing such values is bounded by the step budget.
    let out = limited(
        "x = [1]\ny = [1]\nstartLoop(i, 1, 60)\nx = [x, x]\ny = [y, y]\nendLoop()\nz = x == y",
        json!({"max_steps": 100000}),
    );
    assert_limit(&out, "max_steps");
}

#[test]
fn output_bytes() {
    let out_bytes = run_json(json!({"script": "s = \"abcdefghij\"\nstartLoop(i, 1, 10)\ns = s + s\nendLoop()\naddResult(s)", "limits": {"max_output_bytes": 5000}}).to_string().as_bytes());
    assert!(out_bytes.len() < 500);
    let out: J = serde_json::from_slice(&out_bytes).unwrap_or(J::Null);
    assert_limit(&out, "max_output_bytes");
}

#[test]
fn log_entries() {
    let out = limited("startLoop(i, 1, 20)\naddVar(a, i)\nendLoop()", json!({"max_log_entries": 5}));
    assert_eq!(out["ok"], true);
    assert_eq!(out["logs"].as_array().map(Vec::len), Some(5));
    assert_eq!(out["logs_truncated"], true);
}

#[test]
fn script_bytes() {
    assert_limit(&limited("addVar(a, 1)\naddVar(b, 2)", json!({"max_script_bytes": 10})), "max_script_bytes");
}

#[test]
fn call_depth() {
    assert_limit(&limited("function f(n) {\nreturn f(n)\n}\nx = f(1)", json!({"max_call_depth": 3})), "max_call_depth");
    let s = "function f(n) {\nif(n, 0, =)\nreturn 0\nend()\nreturn f(n - 1)\n}\nx = f(3)";
    assert_eq!(limited(s, json!({"max_call_depth": 4}))["ok"], true);
    assert_limit(&limited(s, json!({"max_call_depth": 3})), "max_call_depth");
}

#[test]
fn defaults() {
    let l = crate::Limits::default();
    assert_eq!(l.max_call_depth, 64);
    assert_eq!(l.max_loop_iterations, 1_000_000);
    assert_eq!(l.max_steps, 10_000_000);
    assert_eq!(l.max_string_bytes, 1 << 20);
    assert_eq!(l.max_collection_len, 100_000);
    assert_eq!(l.max_output_bytes, 4 << 20);
    assert_eq!(l.max_log_entries, 1000);
    assert_eq!(l.max_script_bytes, 1 << 20);
}
