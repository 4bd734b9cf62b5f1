use super::*;

#[test]
fn all_errors_collected_with_positions() {
    let d = diags("addVar(a, 1)\nx = 1 +\naddVar(a)\n  y = (2\nfoo bar");
    assert_eq!(d.len(), 4, "{d:?}");
    assert_eq!((d[0].0, d[0].1), (2, 8));
    assert_eq!(d[1].0, 3);
    assert!(d[1].2.contains("addVar expects 2 arguments (targetVarName, varValue), got 1"), "{d:?}");
    assert_eq!((d[2].0, d[2].1), (4, 9));
    assert_eq!((d[3].0, d[3].1), (5, 5));
}

#[test]
fn syntax_error_output() {
    let out = run("addVar(a, 1)\naddResult(a)\nx = )");
    assert_eq!(out["ok"], false);
    assert_eq!(out["kind"], "syntax");
    assert_eq!(out["line"], 3);
    assert_eq!(out["diagnostics"][0]["column"], 5);
    // Nothing ran: no logs.
    assert_eq!(out["logs"], json!([]));
}

#[test]
fn unbalanced_blocks() {
    assert!(diags("else()")[0].2.contains("else() without"));
    assert!(diags("end()")[0].2.contains("end() without"));
    assert!(diags("endLoop()")[0].2.contains("endLoop() without"));
    assert!(diags("exception(e)")[0].2.contains("exception() without"));
    assert!(diags("if(a, 1, =)\naddVar(b, 1)")[0].2.contains("not closed"));
    assert!(diags("startLoop(i, 1, 2)\nend()").iter().any(|d| d.2.contains("use endLoop()")));
    assert!(diags("try()\naddVar(a, 1)\nend()")[0].2.contains("no exception() handler"));
    assert!(diags("try()\naddVar(a,1)")[0].2.contains("no exception() handler"));
    assert!(diags("}")[0].2.contains("without an open function"));
    assert!(diags("function f() {\naddVar(a, 1)")[0].2.contains("not closed"));
    assert!(diags("if(a, 1, =)\nelse()\nelse()\nend()")[0].2.contains("second else()"));
}

#[test]
fn return_and_functions_rules() {
    assert!(diags("return 1")[0].2.contains("only allowed inside a function"));
    assert!(diags("function f() {\nfunction g() {\n}\n}")[0].2.contains("top level"));
    assert!(diags("if(a, 1, =)\nfunction g() {\n}\nend()")[0].2.contains("top level"));
    assert!(diags("function f(a, a) {\n}")[0].2.contains("duplicate parameter"));
    assert!(diags("function f() {\n}\nfunction f() {\n}")[0].2.contains("defined twice"));
    assert!(diags("function addVar(a) {\n}")[0].2.contains("hide the command"));
    assert!(diags("function str(a) {\n}")[0].2.contains("hide the built-in"));
}

#[test]
fn comments() {
    assert_eq!(ok("// a comment\naddVar(a, 1) // trailing\naddResult(a) // note, with (parens"), json!({"a": 1}));
    assert_eq!(ok("   // indented comment\nx = 7 // 2\naddResult(x)"), json!({"x": 3}));
    assert_eq!(ok("x = 7 // 2 // floor division then comment\naddResult(x)"), json!({"x": 3}));
    assert_eq!(ok("addVar(u, \"http://a.b/c\") // keep\naddResult(u)"), json!({"u": "http://a.b/c"}));
    assert_eq!(
        ok("addVar(u, https://api.example.com/data)\naddResult(u)"),
        json!({"u": "https://api.example.com/data"})
    );
    assert_eq!(ok("x = 5 // set x to five\naddResult(x)"), json!({"x": 5}));
}

#[test]
fn expression_depth_is_a_syntax_error() {
    let deep = format!("x = {}1{}", "(".repeat(100), ")".repeat(100));
    assert!(diags(&deep)[0].2.contains("nested too deeply"));
    let ok_depth = format!("x = {}1{}", "(".repeat(30), ")".repeat(30));
    assert!(check(&ok_depth).is_ok());
    let neg = format!("x = {}1", "-".repeat(200));
    assert!(diags(&neg)[0].2.contains("nested too deeply"));
    let idx = format!("x = a{}", "[0]".repeat(100));
    assert!(diags(&idx)[0].2.contains("nested too deeply"));
    // Long flat chains are fine.
    let chain = format!("x = 0{}", " + 1".repeat(5000));
    assert_eq!(eval(&chain[4..]), json!(5000));
}

#[test]
fn block_depth_is_a_syntax_error() {
    let s = format!("{}{}", "if(1, 1, =)\n".repeat(70), "end()\n".repeat(70));
    assert!(diags(&s).iter().any(|d| d.2.contains("nested too deeply")));
    let s = format!("{}{}", "if(1, 1, =)\n".repeat(60), "end()\n".repeat(60));
    assert!(check(&s).is_ok());
}

#[test]
fn statements_that_are_not_statements() {
    assert!(diags("42")[0].2.contains("expected a statement"));
    assert!(diags("x")[0].2.contains("alone is not a statement"));
    assert!(diags("x == 1")[0].2.contains("expected '(' or '='"));
    assert!(diags("True = 1")[0].2.contains("cannot assign"));
    assert!(diags("addVar(a, 1) extra")[0].2.contains("unexpected text after ')'"));
    assert!(diags("addVar(a, 1")[0].2.contains("missing ')'"));
    assert!(diags("x = 1 = 2")[0].2.contains("'=' is not a comparison"));
}

#[test]
fn check_api() {
    assert!(check("addVar(a, 1)\naddResult(a)").is_ok());
    assert!(check("if(a, 1, ~)\nend()").is_err());
}

#[test]
fn a_flood_of_errors_lists_the_first_hundred_and_counts_the_rest() {
    let script = "x = (\n".repeat(5000);
    let err = crate::check(&script).map(|_| ()).expect_err("syntax errors");
    let e = crate::Error::syntax(err);
    assert_eq!(e.diagnostics.len(), crate::error::MAX_DIAGNOSTICS + 1);
    assert!(
        e.diagnostics.last().is_some_and(|d| d.message == "... and 4900 more syntax errors"),
        "{:?}",
        e.diagnostics.last()
    );
    assert!(e.message.contains("(and 4999 more)"), "{}", e.message);
}

#[test]
fn one_line_function_bodies() {
    // The original benchmark's own script.
    let out = run("function calc(a){ return a * 1.21 }\nval = calc(100)\naddResult(val)");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["result"]["val"], 121.0);
    // Several statements, strings and dicts holding `;`, `{` and `}`.
    let out =
        run("function f(a) { x = a + 1; s = \"a;b}\"; d = {\"k\": \"}\"}; return x }  // note\nr = f(1)\naddResult(r)");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["result"]["r"], 2);
    // A header with the first statement on its line, the rest below.
    let out = run("function g(a){ x = a * 3\n return x\n}\nr = g(2)\naddResult(r)");
    assert_eq!(out["result"]["r"], 6, "{out}");
    // A header whose `{` is followed by a comment opens a block.
    let out = run("function k(a) { // doubles\n return a * 2\n}\nr = k(4)\naddResult(r)");
    assert_eq!(out["result"]["r"], 8, "{out}");
    // A one-line function with no return gives null.
    let out = run("function h(){ addVar(q, 1) }\nr = h()\naddResult(r)");
    assert_eq!(out["ok"], true, "{out}");
    // Errors keep their line and column.
    let out = run("function bad(a){ return a + }");
    assert_eq!(out["kind"], "syntax", "{out}");
    assert_eq!(out["diagnostics"][0]["line"], 1, "{out}");
    let out = run("function bad(a){ return a } extra");
    assert_eq!(out["kind"], "syntax", "{out}");
}

#[test]
fn while_loops() {
    // The original benchmark's heavy script.
    let out = run("x=0\nwhile(x<1000)\nx=x+1\nend()\naddResult(x)");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["result"]["x"], 1000);
    // endLoop() closes one too; a false condition runs zero rounds; return
    // leaves the function from inside one.
    let out = run("n = 0\nwhile (n < 3)\n  n = n + 1\nendLoop()\nwhile(False)\n  n = 99\nend()\n\
         function first_over(limit) {\n  i = 0\n  while(True)\n    i = i + 1\n    if(i, limit, >)\n      return i\n    end()\n  end()\n}\n\
         f = first_over(5)\naddResult(n)\naddResult(f)");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!((&out["result"]["n"], &out["result"]["f"]), (&json!(3), &json!(6)), "{out}");
    // Rounds count against max_loop_iterations: an endless loop ends.
    let out = run_with(json!({"script": "while(1)\n  x = 1\nend()", "limits": {"max_loop_iterations": 50}}));
    assert_eq!(out["kind"], "limit", "{out}");
    assert!(out["error"].as_str().unwrap_or_default().contains("max_loop_iterations"), "{out}");
    // A condition that fails is a catchable runtime error.
    let out = run("try()\n  while(y < 1)\n    x = 1\n  end()\nexception(e)\nend()\naddResult(e)");
    assert_eq!(out["ok"], true, "{out}");
    // Syntax: one condition, closed.
    for (script, msg) in [
        ("while()\nend()", "while() takes one condition"),
        ("while(a, b)\nend()", "while() takes one condition"),
        ("while(x < 1)", "while() at line 1 is not closed with end()"),
        ("while(x < 1) x = 2\nend()", "unexpected text after while(...)"),
        ("while = 3", "cannot assign to 'while'"),
    ] {
        let out = run(script);
        assert_eq!(out["kind"], "syntax", "{script}: {out}");
        assert!(out["error"].as_str().unwrap_or_default().contains(msg), "{script}: {out}");
    }
}
