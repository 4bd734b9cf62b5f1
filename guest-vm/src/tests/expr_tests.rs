use super::*;

#[test]
fn precedence() {
    assert_eq!(eval("1 + 2 * 3"), json!(7));
    assert_eq!(eval("(1 + 2) * 3"), json!(9));
    assert_eq!(eval("-2 ** 2"), json!(-4));
    assert_eq!(eval("2 ** 3 ** 2"), json!(512));
    assert_eq!(eval("2 ** -1"), json!(0.5));
    assert_eq!(eval("10 - 4 - 3"), json!(3));
    assert_eq!(eval("2 * 3 % 4"), json!(2));
    assert_eq!(eval("1 + 2 == 3 and not 1 > 2"), json!(true));
    assert_eq!(eval("1 < 2 < 3"), json!(true));
    assert_eq!(eval("3 > 2 > 1 > 1"), json!(false));
}

#[test]
fn int_and_float_stay_distinct() {
    let out = run(
        "x = 50 / 2\ny = 7 // 2\nz = 7.0 // 2\nw = 2 * 3\nf = 1.5 + 1\naddResult(x)\naddResult(y)\naddResult(z)\naddResult(w)\naddResult(f)",
    );
    assert_eq!(out_text(&out["result"]), r#"{"x":25.0,"y":3,"z":3.0,"w":6,"f":2.5}"#);
    // Raw bytes of the output too.
    let raw = String::from_utf8(run_json(br#"{"script":"x = 50 / 2\naddResult(x)"}"#)).unwrap_or_default();
    assert!(raw.contains(r#""x":25.0"#), "{raw}");
}

#[test]
fn python_division_semantics() {
    assert_eq!(eval("-7 // 2"), json!(-4));
    assert_eq!(eval("-7 % 3"), json!(2));
    assert_eq!(eval("7 % -3"), json!(-2));
    assert_eq!(eval("-7.5 % 2"), json!(0.5));
    assert!(fails("x = 1 / 0", "runtime").contains("division by zero"));
    assert!(fails("x = 1 // 0", "runtime").contains("division by zero"));
    assert!(fails("x = 1 % 0", "runtime").contains("modulo by zero"));
    assert!(fails("x = 1.0 / 0.0", "runtime").contains("division by zero"));
}

#[test]
fn overflow_and_non_finite() {
    assert!(fails("x = 9223372036854775807 + 1", "runtime").contains("overflow"));
    assert!(fails("x = 2 ** 64", "runtime").contains("overflow"));
    assert!(fails("x = -9223372036854775807 - 2", "runtime").contains("overflow"));
    assert!(fails("x = 10.0 ** 400", "runtime").contains("not a finite number"));
    assert!(fails("x = 1e308 * 10", "runtime").contains("not a finite number"));
    assert!(fails("x = float(\"inf\")", "runtime").contains("invalid number"));
    assert_eq!(eval("-9223372036854775807 - 1"), json!(i64::MIN));
    assert!(fails("x = -9223372036854775807 - 1\ny = x // -1", "runtime").contains("overflow"));
    assert!(fails("x = -9223372036854775807 - 1\ny = -x", "runtime").contains("overflow"));
}

#[test]
fn strings_and_lists() {
    assert_eq!(eval("\"a\" + 'b'"), json!("ab"));
    assert_eq!(eval("[1, 2] + [3]"), json!([1, 2, 3]));
    assert!(fails("x = \"a\" + 1", "runtime").contains("use str(x)"));
    assert_eq!(eval("\"n=\" + str(1)"), json!("n=1"));
    assert_eq!(eval("{\"k\": [1, {\"z\": None}], \"b\": True}"), json!({"k": [1, {"z": null}], "b": true}));
    assert_eq!(eval("[true, false, null]"), json!([true, false, null]));
}

#[test]
fn indexing() {
    assert_eq!(vars("xs = [10, 20, 30]\na = xs[0]\nb = xs[-1]\nd = {\"k\": xs}\nc = d[\"k\"][1]")["c"], json!(20));
    assert_eq!(vars("xs = [10, 20, 30]\nb = xs[-1]")["b"], json!(30));
    assert_eq!(eval("\"hello\"[1]"), json!("e"));
    assert!(fails("xs = [1]\nx = xs[5]", "runtime").contains("out of range"));
    assert!(fails("xs = [1]\nx = xs[-2]", "runtime").contains("out of range"));
    assert!(fails("d = {}\nx = d[\"k\"]", "runtime").contains("not found"));
    assert!(fails("x = 5[0]", "runtime").contains("cannot be indexed"));
}

#[test]
fn builtins() {
    assert_eq!(eval("str(2.0)"), json!("2.0"));
    assert_eq!(eval("str(None)"), json!("None"));
    assert_eq!(eval("str(True)"), json!("True"));
    assert_eq!(eval("str([1, \"a\"])"), json!("[1,\"a\"]"));
    assert_eq!(eval("int(\"42\")"), json!(42));
    assert_eq!(eval("int(3.9)"), json!(3));
    assert_eq!(eval("int(-3.9)"), json!(-3));
    assert_eq!(eval("float(\"2.5\")"), json!(2.5));
    assert_eq!(eval("float(2)"), json!(2.0));
    assert_eq!(eval("len(\"héllo\")"), json!(5));
    assert_eq!(eval("len([1,2,3])"), json!(3));
    assert_eq!(eval("len({\"a\": 1})"), json!(1));
    assert_eq!(eval("bool(\"\")"), json!(false));
    assert_eq!(eval("bool([0])"), json!(true));
    assert!(fails("x = int(\"abc\")", "runtime").contains("invalid integer"));
    assert!(fails("x = len(5)", "runtime").contains("len()"));
    assert!(fails("x = str(1, 2)", "runtime").contains("exactly one"));
    assert!(fails("x = int(1e300)", "runtime").contains("out of range"));
}

#[test]
fn boolean_short_circuit() {
    // The right side would fail if evaluated.
    assert_eq!(eval("False and undefined_name"), json!(false));
    assert_eq!(eval("True or undefined_name"), json!(true));
    assert_eq!(eval("0 or \"x\""), json!("x"));
    assert_eq!(eval("1 and 2"), json!(2));
    assert_eq!(eval("not []"), json!(true));
    assert!(fails("x = True and undefined_name", "runtime").contains("'undefined_name' is not defined"));
}

#[test]
fn equality_and_ordering() {
    assert_eq!(eval("1 == 1.0"), json!(true));
    assert_eq!(eval("\"1\" == 1"), json!(false));
    assert_eq!(eval("[1, [2]] == [1, [2]]"), json!(true));
    assert_eq!(eval("{\"a\": 1} != {\"a\": 2}"), json!(true));
    assert_eq!(eval("\"abc\" < \"abd\""), json!(true));
    assert!(fails("x = [1] < 2", "runtime").contains("not supported"));
}

#[test]
fn templates() {
    assert_eq!(
        vars("name = \"Ana\"\nage = 30\nx = `Hello ${name}, you are ${age}`")["x"],
        json!("Hello Ana, you are 30")
    );
    assert_eq!(vars("f = 2.0\nx = `v=${f} n=${n}`\n".replace("${n}", "").as_str())["x"], json!("v=2.0 n="));
    assert!(fails("x = `Hi ${nobody}`", "runtime").contains("template variable 'nobody' is not defined"));
}

#[test]
fn undefined_names() {
    assert!(fails("x = y + 1", "runtime").contains("variable 'y' is not defined"));
    assert!(fails("x = y", "runtime").contains("variable 'y' is not defined"));
    let out = run("a = 1\nb = 2\nx = zz * 2");
    assert_eq!(out["line"], 3);
    assert_eq!(out["error"], "line 3: variable 'zz' is not defined");
}
