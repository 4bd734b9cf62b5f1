//! The input's `catalog` and `mode`: restricted built-ins, catalog commands
//! written in AVAP, unsupported entries, check mode.

use serde_json::{Value as J, json};

use super::run_with;
use crate::{Catalog, Limits, Request, check_catalog_function, execute_with_catalog};

const GREET: &str = "function greet(who) {\n  return `hi ${who}`\n}";

fn greet_catalog() -> J {
    json!({"functions": [{"name": "greet", "source": GREET}]})
}

fn with_catalog(script: &str, catalog: J) -> J {
    run_with(json!({"script": script, "catalog": catalog}))
}

fn ok_vars(script: &str, catalog: J) -> J {
    let out = with_catalog(script, catalog);
    assert_eq!(out["ok"], true, "script failed: {script}\n{out}");
    out["variables"].clone()
}

fn err(script: &str, catalog: J) -> String {
    let out = with_catalog(script, catalog);
    assert_eq!(out["ok"], false, "script should fail: {script}\n{out}");
    assert_eq!(out["kind"], "runtime", "{out}");
    out["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn no_catalog_and_empty_catalog_allow_every_builtin() {
    // `catalog` absent, null or without `commands`: today's behaviour.
    for input in [
        json!({"script": "addVar(a, 1)\nencodeMD5(a, b)"}),
        json!({"script": "addVar(a, 1)\nencodeMD5(a, b)", "catalog": null}),
        json!({"script": "addVar(a, 1)\nencodeMD5(a, b)", "catalog": {}}),
    ] {
        let out = run_with(input);
        assert_eq!(out["logs"][0]["success"], true, "{out}");
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["variables"]["b"], "c4ca4238a0b923820dcc509a6f75849b");
    }
}

#[test]
fn commands_restrict_the_builtins() {
    let catalog = json!({"commands": ["addVar", "addResult", "notABuiltin"]});
    assert_eq!(ok_vars("addVar(a, 1)\naddResult(a)", catalog.clone())["a"], 1);
    let out = with_catalog("addVar(a, 1)\ngetListLen(a, n)", catalog.clone());
    assert_eq!(out["error"], "line 2: command 'getListLen' not found in the catalog");
    // The failed command is logged.
    assert_eq!(out["logs"][1]["command"], "getListLen");
    assert_eq!(out["logs"][1]["success"], false);
    // Also in the `x = Cmd(...)` form.
    assert!(err("n = getListLen(a)", catalog.clone()).contains("not found"));
    // An empty list leaves only control flow.
    assert!(err("addVar(a, 1)", json!({"commands": []})).contains("'addVar' not found in the catalog"));
}

#[test]
fn control_flow_is_always_available() {
    let script = "x = 0\nstartLoop(i, 1, 3)\nif(i, 2, \"==\")\nx = x + 10\nelse()\nx = x + 1\nend()\nendLoop()\n\
                  try()\nx = x / 0\nexception(e)\nend()";
    let v = ok_vars(script, json!({"commands": []}));
    assert_eq!(v["x"], 12);
    assert_eq!(v["e"], "division by zero");
}

#[test]
fn not_found_in_the_catalog_is_catchable() {
    let script = "try()\nencodeMD5(a, b)\nexception(e)\nend()\naddVar(done, 1)";
    let v = ok_vars(script, json!({"commands": ["addVar"]}));
    assert_eq!(v["e"], "command 'encodeMD5' not found in the catalog");
    assert_eq!(v["done"], 1);
}

#[test]
fn catalog_function_as_a_statement() {
    let out = with_catalog("addVar(name, bob)\ngreet(name)\ngreet(nobody)", greet_catalog());
    assert_eq!(out["ok"], true, "{out}");
    let logs = out["logs"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = logs.iter().filter_map(|l| l["command"].as_str()).collect();
    assert_eq!(names, ["addVar", "greet", "greet"]);
    assert_eq!(logs[1]["success"], true);
    assert_eq!(logs[1]["line"], 2);
}

#[test]
fn statement_arguments_follow_the_value_rules() {
    let catalog = json!({"functions": [{"name": "keep", "source": "function keep(a, b, c) {\n  kept = [a, b, c]\n}"}]});
    let v = ok_vars("n = 5\nkeep(%Y-%m, n, )", catalog.clone());
    assert_eq!(v["kept"], json!(["%Y-%m", 5, ""]));
    // In `x = f(...)` the arguments are expressions.
    let out = with_catalog("x = keep(%Y, 1, 2)", catalog.clone());
    assert_eq!(out["kind"], "syntax", "{out}");
    // Wrong argument count: a runtime error naming the function.
    assert!(err("keep(1)", catalog).contains("function 'keep' expects 3 arguments (a, b, c), got 1"));
}

#[test]
fn catalog_function_assigned_and_in_expressions() {
    let v = ok_vars(
        "addVar(name, bob)\nx = greet(name)\ny = \"A\" + greet(\"b\")\nz = greet(nobody)\nw = greet(1 + 2)",
        greet_catalog(),
    );
    assert_eq!(v["x"], "hi bob");
    assert_eq!(v["y"], "Ahi b");
    // A bare word that is not a variable is its text (value rules).
    assert_eq!(v["z"], "hi nobody");
    assert_eq!(v["w"], "hi 3");
    // Inside a script function, and as a command value argument.
    let v = ok_vars(
        "function f(p) {\n  return greet(p) + \"!\"\n}\nx = f(\"ann\")\naddVar(y, greet(\"c\"))",
        greet_catalog(),
    );
    assert_eq!(v["x"], "hi ann!");
    assert_eq!(v["y"], "hi c");
}

#[test]
fn catalog_functions_follow_the_locals_and_globals_rules() {
    // Parameters are locals; other assignments write the script's variables.
    let catalog = json!({"functions": [
        {"name": "bump", "source": "function bump(by) {\n  counter = counter + by\n  by = 0\n  return counter\n}"},
        {"name": "twice", "source": "function twice(x) {\n  bump(x)\n  return bump(x)\n}"},
    ]});
    let v = ok_vars("counter = 1\nby = 100\nr = twice(5)", catalog);
    assert_eq!(v["counter"], 11);
    assert_eq!(v["r"], 11);
    assert_eq!(v["by"], 100);
}

#[test]
fn catalog_functions_share_the_call_depth_limit() {
    let catalog = json!({"functions": [
        {"name": "down", "source": "function down(n) {\n  return down(n + 1)\n}"},
    ]});
    let out = run_with(json!({"script": "x = down(0)", "catalog": catalog, "limits": {"max_call_depth": 10}}));
    assert_eq!(out["kind"], "limit", "{out}");
    assert_eq!(out["error"], "line 1: limit exceeded: max_call_depth (10)");
    // Script functions and catalog functions count together.
    let catalog = json!({"functions": [{"name": "c", "source": "function c(n) {\n  return s(n)\n}"}]});
    let out = run_with(json!({"script": "function s(n) {\n  return c(n)\n}\nx = s(1)", "catalog": catalog}));
    assert_eq!(out["kind"], "runtime", "{out}");
    // Catalog code does not see the script's functions.
    assert!(out["error"].as_str().unwrap_or_default().contains("function 's' not found"), "{out}");
}

#[test]
fn errors_inside_a_catalog_function_name_it() {
    let catalog =
        json!({"functions": [{"name": "div", "source": "// divide\nfunction div(a, b) {\n  return a / b\n}"}]});
    assert_eq!(
        err("x = 1\nx = div(1, 0)", catalog.clone()),
        "line 2: in catalog command 'div', line 3: division by zero"
    );
    let v = ok_vars("try()\ndiv(1, 0)\nexception(e)\nend()\nx = div(1, 4)", catalog);
    assert_eq!(v["e"], "in catalog command 'div', line 3: division by zero");
    assert_eq!(v["x"], 0.25);
}

#[test]
fn script_function_shadows_the_catalog_function() {
    let script = "function greet(who) {\n  return \"own \" + who\n}\nx = greet(\"a\")\ngreet(\"b\")";
    let out = with_catalog(script, greet_catalog());
    assert_eq!(out["variables"]["x"], "own a");
    // A script function call is not logged (it is not a command).
    assert_eq!(out["logs"], json!([]));
}

#[test]
fn builtin_shadows_a_catalog_function() {
    // A catalog function may not take a built-in's name: it is invalid and
    // the built-in runs.
    let catalog = json!({"functions": [{"name": "addVar", "source": "function addVar(a, b) {\n  return 1\n}"}]});
    assert_eq!(ok_vars("addVar(x, 5)", catalog)["x"], 5);
    assert!(check_catalog_function("addVar", "function addVar(a, b) {\n  return 1\n}").is_err());
}

#[test]
fn invalid_catalog_function_fails_only_when_called() {
    let catalog = json!({"functions": [
        {"name": "greet", "source": GREET},
        {"name": "broken", "source": "function broken(a {\n}"},
        {"name": "misnamed", "source": "function other(a) {\n}"},
        {"name": "extra", "source": "function extra(a) {\n}\naddVar(x, 1)"},
    ]});
    assert_eq!(ok_vars("x = greet(\"ok\")", catalog.clone())["x"], "hi ok");
    let e = err("x = 1\nbroken(1)", catalog.clone());
    assert!(e.starts_with("line 2: catalog command 'broken' is invalid: syntax error at line 1"), "{e}");
    let e = err("y = misnamed(1)", catalog.clone());
    assert!(e.contains("catalog command 'misnamed' is invalid") && e.contains("named 'other'"), "{e}");
    let e = err("extra(1)", catalog.clone());
    assert!(e.contains("catalog command 'extra' is invalid") && e.contains("outside"), "{e}");
    let v = ok_vars("try()\nbroken(1)\nexception(e)\nend()", catalog);
    assert!(v["e"].as_str().unwrap_or_default().contains("catalog command 'broken' is invalid"));
}

#[test]
fn unsupported_entries() {
    let catalog = json!({"unsupported": ["legacyPyCmd"]});
    let expected = "command 'legacyPyCmd' is not supported by this host (catalog type 'function')";
    assert_eq!(err("legacyPyCmd(a)", catalog.clone()), format!("line 1: {expected}"));
    assert_eq!(err("x = legacyPyCmd(a)", catalog.clone()), format!("line 1: {expected}"));
    assert_eq!(err("x = 1 + legacyPyCmd()", catalog.clone()), format!("line 1: {expected}"));
    let v = ok_vars("try()\nlegacyPyCmd(a)\nexception(e)\nend()", catalog);
    assert_eq!(v["e"], expected);
    // A built-in excluded from `commands` but listed as unsupported.
    let e = err("encodeMD5(a, b)", json!({"commands": [], "unsupported": ["encodeMD5"]}));
    assert!(e.ends_with("command 'encodeMD5' is not supported by this host (catalog type 'function')"), "{e}");
}

#[test]
fn unknown_names_are_still_not_found() {
    assert_eq!(err("foo(1)", greet_catalog()), "line 1: command 'foo' not found");
    assert!(err("x = foo(1)", greet_catalog()).contains("function 'foo' not found"));
}

#[test]
fn check_mode_output() {
    let script = "function helper(a) {\n  addResult(a)\n  return greet(a)\n}\nfunction aaa() {\n}\n\
                  addVar(x, 1)\nif(x, 1, =)\ny = helper(x) + str(len(\"ab\"))\nend()\nlegacyPyCmd(x)\nz = getListLen(x)";
    let out = run_with(json!({"script": script, "mode": "check", "catalog": greet_catalog()}));
    assert_eq!(
        out,
        json!({"ok": true, "mode": "check", "functions": ["aaa", "helper"],
               "commands": ["addResult", "addVar", "getListLen", "greet", "legacyPyCmd"]})
    );
    // Nothing runs: a script that would fail at run time checks fine.
    let out = run_with(json!({"script": "x = 1 / 0\nnope()", "mode": "check"}));
    assert_eq!(out, json!({"ok": true, "mode": "check", "functions": [], "commands": ["nope"]}));
    // Syntax errors: the usual failure.
    let out = run_with(json!({"script": "addVar(a)\nx = (", "mode": "check"}));
    assert_eq!(out["ok"], false);
    assert_eq!(out["kind"], "syntax");
    assert_eq!(out["diagnostics"].as_array().map(Vec::len), Some(2));
    // Invalid catalog function sources are reported, the script stays ok.
    let catalog = json!({"functions": [{"name": "greet", "source": GREET}, {"name": "bad", "source": "x = 1"}]});
    let out = run_with(json!({"script": "bad()", "mode": "check", "catalog": catalog}));
    assert_eq!(out["ok"], true);
    assert_eq!(out["catalog_errors"][0]["name"], "bad");
    assert!(
        out["catalog_errors"][0]["error"].as_str().unwrap_or_default().contains("catalog command 'bad' is invalid")
    );
    assert_eq!(out["catalog_errors"].as_array().map(Vec::len), Some(1));
    // `"mode": "run"` is the default.
    assert_eq!(run_with(json!({"script": "addVar(a, 1)", "mode": "run"}))["variables"]["a"], 1);
}

#[test]
fn bad_mode_and_bad_catalog_are_input_errors() {
    for (input, msg) in [
        (json!({"script": "addVar(a, 1)", "mode": "dry"}), "unknown mode 'dry'"),
        (json!({"script": "addVar(a, 1)", "mode": 1}), "'mode' must be a string"),
        (json!({"script": "addVar(a, 1)", "catalog": []}), "'catalog' must be an object"),
        (json!({"script": "addVar(a, 1)", "catalog": {"commands": "addVar"}}), "'catalog.commands' must be a list"),
        (json!({"script": "addVar(a, 1)", "catalog": {"unsupported": [1]}}), "'catalog.unsupported' must be a list"),
        (json!({"script": "addVar(a, 1)", "catalog": {"functions": [{"name": "f"}]}}), "'catalog.functions' items"),
        (json!({"script": "addVar(a, 1)", "catalog": {"extra": 1}}), "unknown field 'catalog.extra'"),
        (
            json!({"script": "addVar(a, 1)", "catalog": {"functions": [
                {"name": "f", "source": "function f() {\n}"}, {"name": "f", "source": "function f() {\n}"}]}}),
            "given twice",
        ),
    ] {
        let out = run_with(input.clone());
        assert_eq!(out["kind"], "input", "{input}\n{out}");
        assert!(out["error"].as_str().unwrap_or_default().contains(msg), "{input}\n{out}");
    }
}

#[test]
fn check_catalog_function_api() {
    assert_eq!(check_catalog_function("greet", GREET), Ok(vec!["who".to_string()]));
    let src = "// comment\n\nfunction sum(a, b, c) {\n  return a + b + c\n}\n";
    assert_eq!(check_catalog_function("sum", src), Ok(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(check_catalog_function("none", "function none() {\n}"), Ok(vec![]));
    for (name, src, fragment) in [
        ("g", "", "empty"),
        ("g", "// only a comment", "no function"),
        ("g", "function h() {\n}", "named 'h'"),
        ("g", "function g() {\n}\nfunction h() {\n}", "2 functions"),
        ("g", "addVar(a, 1)\nfunction g() {\n}", "outside"),
        ("g", "function g( {\n}", "parameter"),
        ("str", "function str(a) {\n}", "built-in"),
    ] {
        let d = check_catalog_function(name, src).expect_err(src);
        assert!(d.iter().any(|d| d.message.contains(fragment)), "{src}: {d:?}");
    }
}

#[test]
fn rust_api_with_a_catalog() {
    let mut catalog = Catalog::new();
    catalog.restrict_commands(["addResult"]);
    assert!(catalog.add_function("greet", GREET).is_ok());
    assert!(catalog.add_function("greet", GREET).is_err());
    catalog.add_unsupported("py");
    let outcome =
        execute_with_catalog("x = greet(\"z\")\naddResult(x)", &Request::default(), &Limits::default(), &catalog);
    let success = outcome.result.expect("runs");
    assert_eq!(success.result.get("x").and_then(|v| serde_json::to_value(v).ok()), Some(json!("hi z")));
    let report = crate::check_script("py()\ngreet(1)", &catalog, &Limits::default()).expect("checks");
    assert_eq!(report.commands, ["greet", "py"]);
}

/// Runs `f` on one thread with a large stack: the prepared catalog is per
/// thread, so preparing and running must share one.
fn on_one_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).expect("thread").join().expect("no panic");
}

fn exec(input: J) -> J {
    serde_json::from_slice(&crate::run_json(input.to_string().as_bytes())).unwrap_or(J::Null)
}

#[test]
fn a_prepared_catalog_serves_inputs_that_name_none() {
    on_one_thread(|| {
        let prepared = crate::prepare_json(
            br#"{"catalog": {"commands": ["addResult", "addVar"], "functions": [{"name": "twice", "source": "function twice(a) {\n return a * 2\n}"}]}}"#,
        );
        assert_eq!(prepared, br#"{"ok":true,"functions":1}"#);
        let out = exec(json!({"script": "r = twice(21)\naddResult(r)"}));
        assert_eq!(out["result"]["r"], 42, "{out}");
        // The prepared restriction holds: getListLen is not in its commands.
        let out = exec(json!({"script": "getListLen(x, n)"}));
        assert!(out["error"].as_str().unwrap_or_default().contains("not found in the catalog"), "{out}");
        // An input that names its own catalog uses that one.
        let out = exec(json!({"script": "getListLen(x, n)", "variables": {"x": [1]}, "catalog": {}}));
        assert_eq!(out["ok"], true, "{out}");
        // An invalid command is reported by name (and fails if called).
        let answer = crate::prepare_json(
            br#"{"catalog": {"functions": [{"name": "broken", "source": "function other() {\n}"}]}}"#,
        );
        let answer: J = serde_json::from_slice(&answer).expect("json");
        assert_eq!(answer["catalog_errors"][0]["name"], "broken", "{answer}");
        // A broken prepare document is an input error.
        let bad = crate::prepare_json(br#"{"catalog": 5}"#);
        assert!(String::from_utf8_lossy(&bad).contains("'catalog' must be an object"));
    });
}

#[test]
fn a_large_catalog_builds_in_linear_time() {
    on_one_thread(|| {
        let functions: Vec<J> = (0..10_000)
            .map(|i| json!({"name": format!("f{i:05}"), "source": format!("function f{i:05}(a) {{\n return a + {i}\n}}")}))
            .collect();
        let doc = serde_json::to_vec(&json!({"catalog": {"functions": functions}})).expect("json");
        let started = std::time::Instant::now();
        assert_eq!(crate::prepare_json(&doc), br#"{"ok":true,"functions":10000}"#);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        let out = exec(json!({"script": "r = f09999(1)\naddResult(r)"}));
        assert_eq!(out["result"]["r"], 10_000, "{out}");
        let dup = serde_json::to_vec(&json!({"catalog": {"functions": [
            {"name": "g", "source": "function g() {\n}"}, {"name": "g", "source": "function g() {\n}"}]}}))
        .expect("json");
        assert!(String::from_utf8_lossy(&crate::prepare_json(&dup)).contains("given twice"));
    });
}
