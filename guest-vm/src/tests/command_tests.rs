use super::*;

#[test]
fn table_has_all_27_commands_with_kinds() {
    use crate::builtins::{Builtin, Kind};
    assert_eq!(Builtin::ALL.len(), 27);
    let iface = |n: &str| {
        Builtin::from_name(n)
            .map(|c| c.params().iter().map(|p| (p.name, p.kind)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(iface("addParam"), vec![("param", Kind::Value), ("variable", Kind::Target)]);
    assert_eq!(iface("RequestPost").len(), 5);
    assert_eq!(
        iface("itemFromList"),
        vec![("SourceVariable", Kind::Source), ("index", Kind::Value), ("TargetVariable", Kind::Target)]
    );
    for name in [
        "addVar",
        "addResult",
        "addParam",
        "getQueryParamList",
        "if",
        "else",
        "end",
        "startLoop",
        "endLoop",
        "try",
        "exception",
        "RequestGet",
        "RequestPost",
        "ormDirect",
        "encodeSHA256",
        "encodeMD5",
        "randomString",
        "replace",
        "getRegex",
        "getDateTime",
        "getTimeStamp",
        "stampToDatetime",
        "getListLen",
        "itemFromList",
        "variableToList",
        "AddvariableToJSON",
        "variableFromJSON",
    ] {
        assert!(Builtin::from_name(name).is_some(), "{name}");
    }
    assert!(Builtin::from_name("addvar").is_none());
}

#[test]
fn add_var() {
    let v = vars(
        "addVar(a, 0)\naddVar('b', \"12\")\naddVar(c, -5)\naddVar(d, \"-7\")\naddVar(e, active)\naddVar(f, a)\naddVar(g, 2.5)\naddVar(h, \"x\" + \"y\")\naddVar(i, )\naddVar(j, True)\naddVar(k, 99999999999999999999999)",
    );
    assert_eq!(v["a"], json!(0));
    assert_eq!(v["b"], json!(12));
    assert_eq!(v["c"], json!(-5));
    assert_eq!(v["d"], json!(-7));
    assert_eq!(v["e"], json!("active"));
    assert_eq!(v["f"], json!(0));
    assert_eq!(v["g"], json!(2.5));
    assert_eq!(v["h"], json!("xy"));
    assert_eq!(v["i"], json!(""));
    assert_eq!(v["j"], json!(true));
    assert_eq!(v["k"], json!("99999999999999999999999"));
    assert_eq!(vars("addVar(s, SELECT * FROM users WHERE id = 1)")["s"], json!("SELECT * FROM users WHERE id = 1"));
    assert_eq!(vars("addVar(f, %Y-%m-%d)")["f"], json!("%Y-%m-%d"));
    assert!(diags("addVar(a, 1, 2)")[0].2.contains("addVar expects 2 arguments (targetVarName, varValue), got 3"));
    assert!(diags("addVar(1 + 2, 1)")[0].2.contains("must be a variable name"));
    assert!(diags("addVar(, 1)")[0].2.contains("is missing"));
}

#[test]
fn add_result_and_variables_output() {
    let out = run_with(json!({"script": "addResult(x)\naddResult(missing)", "variables": {"x": {"a": [1, 2.5]}}}));
    assert_eq!(out["result"], json!({"x": {"a": [1, 2.5]}, "missing": null}));
    assert_eq!(out["variables"], json!({"x": {"a": [1, 2.5]}}));
}

#[test]
fn add_param_and_query_list() {
    let input = json!({
        "script": "addParam(id, a)\naddParam(price, b)\naddParam(name, c)\naddParam(flag, d)\naddParam(nope, e)\naddParam(\"dup\", f)\ngetQueryParamList(q)\naddParam(num, g)",
        "query": [["id", "123"], ["price", "2.5"], ["name", "Ana"], ["dup", "first"], ["dup", "second"]],
        "body": {"flag": true, "id": 999, "num": "-4"}
    });
    let v = run_with(input)["variables"].clone();
    assert_eq!(v["a"], json!(123));
    assert_eq!(v["b"], json!(2.5));
    assert_eq!(v["c"], json!("Ana"));
    assert_eq!(v["d"], json!(true));
    assert_eq!(v["e"], json!(null));
    assert_eq!(v["f"], json!("first"));
    assert_eq!(v["g"], json!(-4));
    assert_eq!(v["q"], json!([{"id": "123"}, {"price": "2.5"}, {"name": "Ana"}, {"dup": "first"}, {"dup": "second"}]));
}

#[test]
fn list_commands() {
    let v = vars(
        "variableToList(1, xs)\nvariableToList(\"two\", xs)\nvariableToList(xs, ys)\ngetListLen(xs, n)\nitemFromList(xs, -1, last)\nitemFromList(xs, \"0\", first)\ngetListLen(nothing, z)\naddVar(s, \"héllo\")\ngetListLen(s, sl)",
    );
    assert_eq!(v["xs"], json!([1, "two"]));
    assert_eq!(v["ys"], json!([[1, "two"]]));
    assert_eq!(v["n"], json!(2));
    assert_eq!(v["last"], json!("two"));
    assert_eq!(v["first"], json!(1));
    assert_eq!(v["z"], json!(0));
    assert_eq!(v["sl"], json!(5));
    assert!(fails("variableToList(1, xs)\nitemFromList(xs, 3, y)", "runtime").contains("out of range"));
    assert!(fails("addVar(s, 1)\nvariableToList(1, s)", "runtime").contains("not a list"));
    assert!(fails("addVar(n, 5)\ngetListLen(n, l)", "runtime").contains("not a list"));
}

#[test]
fn json_commands() {
    let v = vars("AddvariableToJSON(name, Alice, payload)\nAddvariableToJSON(age, 30, payload)\nAddvariableToJSON(\"msg\", `hi ${name}`, payload)\nvariableFromJSON(payload, age, a)\nvariableFromJSON(payload, nope, b)\naddVar(txt, '{\"k\": [1, 2]}')\nvariableFromJSON(txt, k, c)\nvariableFromJSON(missing, k, d)".replace("${name}", "${who}").replace("AddvariableToJSON(\"msg\"", "who = \"Bo\"\nAddvariableToJSON(\"msg\"").as_str());
    assert_eq!(v["payload"], json!({"name": "Alice", "age": 30, "msg": "hi Bo"}));
    assert_eq!(v["a"], json!(30));
    assert_eq!(v["b"], json!(null));
    assert_eq!(v["c"], json!([1, 2]));
    assert_eq!(v["d"], json!(null));
    assert!(fails("addVar(t, \"not json\")\nvariableFromJSON(t, k, x)", "runtime").contains("not a dict"));
    // Text in AVAP literal syntax, as the original servers' users wrote it.
    let v =
        vars("addVar(t, \"{'k': [1, True, None], 'n': -3}\")\nvariableFromJSON(t, k, k)\nvariableFromJSON(t, n, n)");
    assert_eq!(v["k"], json!([1, true, null]));
    assert_eq!(v["n"], json!(-3));
    assert!(fails("addVar(t, \"{'k': secret}\")\nvariableFromJSON(t, k, x)", "runtime").contains("not a dict"));
    assert!(fails("addVar(t, 1)\nAddvariableToJSON(k, 1, t)", "runtime").contains("not a dict"));
}

#[test]
fn capability_commands_without_a_host_and_unknown_commands() {
    for (name, args, cap) in
        [("RequestGet", "u, , , r", "http"), ("RequestPost", "u, , , b, r", "http"), ("ormDirect", "q, r", "db")]
    {
        let msg = fails(&format!("{name}({args})"), "runtime");
        assert_eq!(
            msg,
            format!("line 1: {name}: capability '{cap}' is not available: this interpreter runs without a host")
        );
    }
    assert!(
        diags("RequestGet(u, r)")[0]
            .2
            .contains("RequestGet expects 4 arguments (url, querystring, headers, o_result), got 2")
    );
    assert_eq!(fails("foo(1, 2)", "runtime"), "line 1: command 'foo' not found");
    assert_eq!(fails("x = 1\nFoo()", "runtime"), "line 2: command 'Foo' not found");
}

#[test]
fn input_errors() {
    let out: J = serde_json::from_slice(&run_json(b"{not json")).unwrap_or(J::Null);
    assert_eq!(out["kind"], "input");
    let out: J = serde_json::from_slice(&run_json(br#"{"variables": {}}"#)).unwrap_or(J::Null);
    assert_eq!(out["kind"], "input");
    let out: J = serde_json::from_slice(&run_json(br#"{"script": "addVar(a,1)", "limits": {"max_bogus": 1}}"#))
        .unwrap_or(J::Null);
    assert_eq!(out["kind"], "input");
    let out: J = serde_json::from_slice(&run_json(br#"{"script": "   \n // only a comment"}"#)).unwrap_or(J::Null);
    assert_eq!(out["kind"], "input");
    assert!(out["error"].as_str().unwrap_or_default().contains("empty"));
    let out: J = serde_json::from_slice(&run_json(b"\xff\xfe")).unwrap_or(J::Null);
    assert_eq!(out["kind"], "input");
}

#[test]
fn every_builtin_is_found_by_its_name() {
    use crate::builtins::Builtin;
    for b in Builtin::ALL {
        assert_eq!(Builtin::from_name(b.name()), Some(b), "{}", b.name());
        assert_eq!(b.spec().builtin, b);
    }
}
