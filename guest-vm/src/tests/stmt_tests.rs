use super::*;

#[test]
fn assignment_and_command_target_form() {
    assert_eq!(ok("total = 2 + 3\naddResult(total)"), json!({"total": 5}));
    assert_eq!(ok("x = addVar(, 7)\naddResult(x)"), json!({"x": 7}));
    assert_eq!(ok("x = addVar(9)\naddResult(x)"), json!({"x": 9}));
    assert_eq!(ok("x = addVar(x, 9)\naddResult(x)"), json!({"x": 9}));
    assert!(diags("x = addVar(y, 9)")[0].2.contains("given twice"));
    assert!(diags("x = addResult(a)")[0].2.contains("has no result to store"));
    assert!(diags("x = if(a, 1, =)")[0].2.contains("has no result to store"));
}

#[test]
fn if_else_comparators() {
    let s = |l: &str, r: &str, c: &str| {
        ok(&format!("if({l}, {r}, {c})\naddVar(res, yes)\nelse()\naddVar(res, no)\nend()\naddResult(res)"))["res"]
            .clone()
    };
    assert_eq!(s("1", "\"1\"", "="), json!("yes"));
    assert_eq!(s("5", "5.0", "=="), json!("yes"));
    assert_eq!(s("\"4\"", "\"10\"", "<"), json!("yes")); // numeric, not text
    assert_eq!(s("\"b\"", "\"a\"", ">"), json!("yes"));
    assert_eq!(s("\"2.5\"", "2.5", "<="), json!("yes"));
    assert_eq!(s("3", "2", ">="), json!("yes"));
    assert_eq!(s("3", "2", "\"!=\""), json!("yes"));
    assert_eq!(s("3", "3", "'!='"), json!("no"));
    assert_eq!(s("admin", "\"admin\"", "="), json!("yes")); // bare word read as text
    assert_eq!(s("1 + 1", "2", "="), json!("yes")); // expression
    assert_eq!(s("None", "\"None\"", "="), json!("yes")); // text compare via display
    // A bare word that is a variable reads its value.
    assert_eq!(
        ok("addVar(rol, \"admin\")\nif(rol, admin, =)\naddVar(r, 1)\nelse()\naddVar(r, 2)\nend()\naddResult(r)"),
        json!({"r": 1})
    );
    // Unknown comparator: syntax error when literal, runtime error otherwise.
    assert!(diags("if(1, 1, ~)\nend()")[0].2.contains("unknown comparator '~'"));
    assert!(fails("addVar(op, \"<>\")\nif(1, 1, op)\nend()", "runtime").contains("unknown comparator '<>'"));
}

#[test]
fn loops() {
    assert_eq!(
        ok("total = 0\nstartLoop(i, 1, 10)\ntotal = total + i\nendLoop()\naddResult(total)\naddResult(i)"),
        json!({"total": 55, "i": 10})
    );
    // Bounds from variables and numeric text.
    assert_eq!(ok("addVar(n, \"3\")\nc = 0\nstartLoop(i, 1, n)\nc = c + 1\nendLoop()\naddResult(c)"), json!({"c": 3}));
    // Start above end: zero iterations, loop var untouched.
    let v = vars("c = 0\nstartLoop(k, 5, 1)\nc = c + 1\nendLoop()");
    assert_eq!(v["c"], json!(0));
    assert!(v.get("k").is_none());
    assert!(fails("startLoop(i, 1, \"x\")\nendLoop()", "runtime").contains("must be an integer"));
    // Nested loops.
    assert_eq!(
        ok("c = 0\nstartLoop(i, 1, 3)\nstartLoop(j, 1, 4)\nc = c + 1\nendLoop()\nendLoop()\naddResult(c)"),
        json!({"c": 12})
    );
}

#[test]
fn try_forms() {
    let v = vars("try()\nfoo(1)\naddVar(never, 1)\nexception(err)\naddVar(handled, 1)\nend()");
    assert_eq!(v["err"], json!("command 'foo' not found"));
    assert_eq!(v["__last_error__"], json!("command 'foo' not found"));
    assert_eq!(v["handled"], json!(1));
    assert!(v.get("never").is_none());
    let v = vars("try()\nx = 1 / 0\nm = exception(e)\nend()");
    assert_eq!(v["m"], json!("division by zero"));
    assert_eq!(v["e"], json!("division by zero"));
    let v = vars("try()\nx = 1 / 0\nexception()\naddVar(h, 1)\nend()");
    assert_eq!(v["h"], json!(1));
    assert_eq!(v["__last_error__"], json!("division by zero"));
    // No error: handler skipped.
    let v = vars("try()\naddVar(a, 1)\nexception(e)\naddVar(h, 1)\nend()");
    assert!(v.get("h").is_none());
    // Handler to the end of the script without end().
    let v = vars("try()\nx = nope + 1\nexception(e)\naddVar(h, 1)");
    assert_eq!(v["h"], json!(1));
    // Nested try: inner catches.
    let v = vars("try()\ntry()\nfoo()\nexception(a)\naddVar(inner, 1)\nend()\nexception(b)\naddVar(outer, 1)\nend()");
    assert_eq!(v["inner"], json!(1));
    assert!(v.get("outer").is_none());
    // A capability the host does not grant is catchable.
    let v = vars("try()\nRequestGet(\"http://x\", , , r)\nexception(e)\nend()");
    assert_eq!(v["e"], json!("RequestGet: capability 'http' is not available: this interpreter runs without a host"));
}

#[test]
fn uncaught_error_output() {
    let out = run("addVar(a, 1)\naddVar(b, 2)\nfoo(a)");
    assert_eq!(out["ok"], false);
    assert_eq!(out["kind"], "runtime");
    assert_eq!(out["error"], "line 3: command 'foo' not found");
    assert_eq!(out["line"], 3);
    assert_eq!(out["logs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn functions() {
    let r = ok(
        "function calc(amount, rate) {\ntaxed = amount * rate\nreturn taxed\n}\ntotal = calc(100, 2)\naddVar(copy, calc(3, 3))\naddResult(total)\naddResult(copy)",
    );
    assert_eq!(r, json!({"total": 200, "copy": 9}));
    // Hoisting: callable before definition; no return -> null.
    assert_eq!(ok("x = f()\naddResult(x)\nfunction f() {\naddVar(side, 1)\n}"), json!({"x": null}));
    // Params are locals; other writes go to the script's variables.
    let v = vars("a = 1\nfunction g(a) {\na = a + 10\nb = a\n}\ng(5)");
    assert_eq!(v["a"], json!(1));
    assert_eq!(v["b"], json!(15));
    // Reads fall back to script variables.
    assert_eq!(vars("k = 3\nfunction h(x) {\nreturn x * k\n}\ny = h(2)")["y"], json!(6));
    // Return from inside loops and ifs.
    let s = "function first_over(n) {\nstartLoop(i, 1, 100)\nif(i, n, >)\nreturn i\nend()\nendLoop()\nreturn -1\n}\nx = first_over(5)";
    assert_eq!(vars(s)["x"], json!(6));
    // Recursion.
    let s = "function fact(n) {\nif(n, 1, <=)\nreturn 1\nend()\nreturn n * fact(n - 1)\n}\nx = fact(10)";
    assert_eq!(vars(s)["x"], json!(3628800));
    // Statement call; arity errors at run time.
    assert_eq!(vars("function f(a) {\nout = a\n}\nf(4)")["out"], json!(4));
    assert!(fails("function f(a) {\n}\nx = f(1, 2)", "runtime").contains("expects 1 argument (a), got 2"));
    assert!(fails("x = nothere(1)", "runtime").contains("function 'nothere' not found"));
    assert!(fails("x = 1 + addVar(a, 1)", "runtime").contains("cannot be used inside an expression"));
}

#[test]
fn recursion_limit_is_clear_and_not_catchable() {
    let s = "function r(n) {\nreturn r(n + 1)\n}\ntry()\nx = r(0)\nexception(e)\naddVar(caught, 1)\nend()";
    let out = run(s);
    assert_eq!(out["kind"], "limit", "{out}");
    assert!(out["error"].as_str().unwrap_or_default().contains("limit exceeded: max_call_depth (64)"));
    let out =
        run_with(json!({"script": "function r(n) {\nreturn r(n + 1)\n}\nx = r(0)", "limits": {"max_call_depth": 5}}));
    assert!(out["error"].as_str().unwrap_or_default().contains("max_call_depth (5)"));
    // A huge requested depth is clamped, never a stack overflow.
    let out = run_with(
        json!({"script": "function r(n) {\nreturn r(n + 1)\n}\nx = r(0)", "limits": {"max_call_depth": 1_000_000}}),
    );
    assert_eq!(out["kind"], "limit");
}

#[test]
fn deepest_nesting_is_a_clear_limit() {
    // Deeply nested blocks at a large call depth: the evaluator's native
    // recursion is bounded (max_eval_depth) before any stack overflow.
    let mut s = String::from("function r(n) {\n");
    for _ in 0..60 {
        s.push_str("if(1, 1, =)\n");
    }
    s.push_str(&format!("x = {}r(n + 1){}\n", "(".repeat(55), ")".repeat(55)));
    for _ in 0..60 {
        s.push_str("end()\n");
    }
    s.push_str("return x\n}\ny = r(0)");
    let out = run_with(json!({"script": s, "limits": {"max_call_depth": 10_000}}));
    assert_eq!(out["kind"], "limit", "{out}");
    assert!(out["error"].as_str().unwrap_or_default().contains("max_eval_depth (1000)"), "{out}");
    // Deep expressions inside deep recursion.
    let e = format!("{}r(n + 1){}", "-".repeat(60), "");
    let s = format!("function r(n) {{\nreturn {e}\n}}\ny = r(0)");
    let out = run_with(json!({"script": s, "limits": {"max_call_depth": 10_000}}));
    assert_eq!(out["kind"], "limit", "{out}");
}

#[test]
fn status() {
    let out = run("_status = 201\naddVar(a, 1)\naddResult(a)");
    assert_eq!(out["status"], 201);
    let out = run("addVar(_status, 404)");
    assert_eq!(out["status"], 404);
    assert_eq!(run("addVar(a, 1)")["status"], 200);
    assert!(fails("_status = 99", "runtime").contains("_status must be an integer from 200 to 599"));
    // 1xx are protocol signals, never a script's answer (101 would switch protocols).
    for informational in ["100", "101", "199"] {
        let msg = fails(&format!("_status = {informational}"), "runtime");
        assert!(msg.contains("from 200 to 599"), "{informational}: {msg}");
    }
    assert!(fails("_status = \"abc\"", "runtime").contains("_status"));
}

#[test]
fn logs() {
    let out = run("addVar(a, 1)\nx = a + 1\ntry()\nfoo()\nexception(e)\nend()\nitemFromList(a, 0, b)");
    let logs = out["logs"].as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 2, "{out}");
    assert_eq!(logs[0]["command"], "addVar");
    assert_eq!(logs[0]["line"], 1);
    assert_eq!(logs[0]["success"], true);
    assert!(logs[0]["duration_ms"].is_number());
    assert_eq!(logs[1]["command"], "itemFromList");
    assert_eq!(logs[1]["success"], false);
    assert!(logs[1]["error"].as_str().unwrap_or_default().contains("not a list"));
    assert_eq!(out["logs_truncated"], false);
}

#[test]
fn indentation_and_crlf() {
    assert_eq!(
        ok("  addVar(a, 1)\r\n\tif(a, 1, =)\r\n      addVar(b, 2)\r\n  end()\r\naddResult(b)\r\n"),
        json!({"b": 2})
    );
}
