//! Text and crypto (`encodeSHA256`, `encodeMD5`, `randomString`, `replace`,
//! `getRegex`) and date and time (`getDateTime`, `getTimeStamp`,
//! `stampToDatetime`).

use super::*;
use crate::limits::Limits;

fn var(script: &str, name: &str) -> J {
    vars(script)[name].clone()
}

fn text_var(script: &str, name: &str) -> String {
    var(script, name).as_str().map(str::to_string).unwrap_or_else(|| panic!("{name} is not text in {script}"))
}

#[test]
fn hashes_known_answers() {
    let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let md5_abc = "900150983cd24fb0d6963f7d28e17f72";
    assert_eq!(var("addVar(a, abc)\nencodeSHA256(a, h)", "h"), sha_abc);
    assert_eq!(var("encodeSHA256(\"abc\", h)", "h"), sha_abc);
    assert_eq!(var("encodeMD5(abc, h)", "h"), md5_abc);
    assert_eq!(var("h = encodeMD5(\"abc\")", "h"), md5_abc);
    assert_eq!(var("encodeSHA256(\"\", h)", "h"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(var("encodeMD5(, h)", "h"), "d41d8cd98f00b204e9800998ecf8427e");
    // The value's text: the int 1 hashes as "1".
    assert_eq!(var("addVar(n, 1)\nencodeMD5(n, h)", "h"), "c4ca4238a0b923820dcc509a6f75849b");
    assert_eq!(var("x = [1, 2]\nencodeMD5(x, h)\nencodeMD5(\"[1,2]\", g)\nsame = h == g", "same"), true);
}

#[test]
fn random_string_pattern_forms() {
    for script in [
        "randomString([A-Za-z0-9], 16, t)",
        "randomString(\"[A-Za-z0-9]\", 16, t)",
        "addVar(p, \"[A-Za-z0-9]\")\nrandomString(p, 16, t)",
        "p = \"[A-Za-z0-9]\"\nt = randomString(p, \"16\")",
    ] {
        let t = text_var(script, "t");
        assert_eq!(t.chars().count(), 16, "{script}: {t}");
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()), "{script}: {t}");
    }
    assert_eq!(var("randomString([A-Z], 0, t)", "t"), "");
    let t = text_var("randomString([a-f0-9], 2000, t)", "t");
    assert_eq!(t.len(), 2000);
    assert!(t.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    for c in "0123456789abcdef".chars() {
        assert!(t.contains(c), "{c} never drawn");
    }
    let t = text_var("randomString(\"[\\-x\\]]\", 300, t)", "t");
    assert!(t.chars().all(|c| "-x]".contains(c)), "{t}");
    let t = text_var("randomString(\"[\\d_]\", 300, t)", "t");
    assert!(t.chars().all(|c| c.is_ascii_digit() || c == '_'), "{t}");
    let t = text_var("randomString([ñé], 10, t)", "t");
    assert_eq!(t.chars().count(), 10);
}

#[test]
fn random_string_is_roughly_uniform() {
    let t = text_var("randomString([ab], 20000, t)", "t");
    let a = t.chars().filter(|&c| c == 'a').count();
    assert!((9000..=11000).contains(&a), "{a} a's out of 20000");
    // Three symbols: no modulo bias visible.
    let t = text_var("randomString([xyz], 30000, t)", "t");
    for c in ['x', 'y', 'z'] {
        let n = t.chars().filter(|&d| d == c).count();
        assert!((9000..=11000).contains(&n), "{n} {c}'s out of 30000");
    }
}

#[test]
fn random_string_errors() {
    for (args, expect) in [
        ("\"[a-\", 4, t", "invalid character class"),
        ("[], 4, t", "the class is empty"),
        ("\"abc\", 4, t", "one class in brackets"),
        ("[z-a], 4, t", "out of order"),
        ("[^a], 4, t", "negated"),
        ("[\\q], 4, t", "unknown escape"),
        ("\"[a[b]\", 4, t", "'['"),
        ("[a-z], -1, t", "must not be negative"),
        ("[a-z], 2.5, t", "must be an integer"),
        ("[a-z], abc, t", "must be an integer"),
    ] {
        let msg = fails(&format!("randomString({args})"), "runtime");
        assert!(msg.contains(expect), "randomString({args}): {msg}");
    }
    let out = run_with(json!({"script": "randomString([a-z], 11, t)", "limits": {"max_string_bytes": 10}}));
    assert_eq!(out["kind"], "limit", "{out}");
    let out = run_with(json!({"script": "randomString([ñ], 6, t)", "limits": {"max_string_bytes": 10}}));
    assert_eq!(out["kind"], "limit", "{out}");
    // Catchable.
    let v = vars("try()\nrandomString([], 4, t)\nexception(e)\nend()");
    assert!(v["e"].as_str().unwrap_or_default().contains("randomString"));
}

#[test]
fn class_parser() {
    use crate::commands::text::parse_class;
    let s = |p: &str| parse_class(p).map(|v| v.into_iter().collect::<String>()).unwrap_or_else(|e| e.message);
    assert_eq!(s("[a-c]"), "abc");
    assert_eq!(s("[c-ea-b]"), "abcde");
    assert_eq!(s("[-a]"), "-a");
    assert_eq!(s("[a-]"), "-a");
    assert_eq!(s("[aaa]"), "a");
    assert_eq!(s("[\\w]").len(), 63);
    assert_eq!(s("[\\s]"), "\t\n\u{b}\u{c}\r ");
    assert!(s("[\\d-z]").contains("invalid"));
    assert!(s("[\u{0}-\u{10FFFF}]").contains("more than"));
    assert!(s("[a\\]").contains("lone backslash"));
}

#[test]
fn replace_and_get_regex() {
    assert_eq!(var("replace(\"abc123def\", \\d+, \"#\", t)", "t"), "abc#def");
    assert_eq!(var("replace(\"abc123def\", \"\\d+\", \"#\", t)", "t"), "abc#def");
    assert_eq!(var("replace(\"abc123\", [0-9]{3}, , t)", "t"), "abc");
    assert_eq!(var("replace(\"abc abc\", ^abc, X, t)", "t"), "X abc");
    assert_eq!(var("addVar(p, \"[0-9]\")\nreplace(\"a1b2\", p, \"\", t)", "t"), "ab");
    assert_eq!(var("t = replace(\"john smith\", \"(\\w+) (\\w+)\", \"$2 $1\")", "t"), "smith john");
    assert_eq!(var("replace(\"a.b\", \"\\.\", \"\", t)", "t"), "ab");
    assert_eq!(var("addVar(n, 1200)\nreplace(n, 0, 9, t)", "t"), "1299");
    assert_eq!(var("replace(\"aaa\", \"x\", \"y\", t)", "t"), "aaa");
    assert_eq!(var("getRegex(\"tel 555-1234 or 555-9876\", [0-9]{3}-[0-9]{4}, t)", "t"), "555-1234555-9876");
    assert_eq!(var("getRegex(\"abc\", \"x+\", t)", "t"), J::Null);
    assert_eq!(var("getRegex(\"abcabc\", ^abc, t)", "t"), "abc");
    assert_eq!(var("t = getRegex(\"id=42;\", \\d+)", "t"), "42");
}

#[test]
fn regex_space_rule() {
    use crate::commands::text::translate_spaces;
    assert_eq!(translate_spaces("a b"), "a\\sb");
    assert_eq!(translate_spaces("[ ]"), "[ ]");
    assert_eq!(translate_spaces("[] ] "), "[] ]\\s");
    assert_eq!(translate_spaces("[^ ] "), "[^ ]\\s");
    assert_eq!(translate_spaces("\\  x"), "\\ \\sx");
    assert_eq!(translate_spaces("[\\] ] "), "[\\] ]\\s");
    // A space matches tabs and newlines too; one white-space character each.
    assert_eq!(var("replace(\"a b\\tc\\nd\", \" \", \"_\", t)", "t"), "a_b_c_d");
    assert_eq!(var("replace(\"a \\t b\", \"a +b\", \"ok\", t)", "t"), "ok");
    // In a class, or escaped, a space is only a space.
    assert_eq!(var("replace(\"a b\\tc\", \"[ ]\", \"_\", t)", "t"), "a_b\tc");
    assert_eq!(var("replace(\"a b\\tc\", \"\\ \", \"_\", t)", "t"), "a_b\tc");
}

#[test]
fn regex_errors_and_limits() {
    let msg = fails("replace(\"a\", \"(\", \"\", t)", "runtime");
    assert!(msg.contains("replace: invalid regular expression '('"), "{msg}");
    assert!(!msg.contains('\n'));
    let msg = fails("getRegex(\"a\", \"[z-a]\", t)", "runtime");
    assert!(msg.contains("getRegex: invalid regular expression"), "{msg}");
    let long = "a".repeat(5000);
    let msg = fails(&format!("getRegex(\"a\", \"{long}\", t)"), "runtime");
    assert!(msg.contains("longer than 4096 bytes"), "{msg}");
    // Huge compiled programs are refused, not built.
    let msg = fails("getRegex(\"a\", \"\\w{1000}{1000}\", t)", "runtime");
    assert!(msg.contains("invalid regular expression"), "{msg}");
    let v = vars("try()\nreplace(\"a\", \"(\", \"\", t)\nexception(e)\nend()");
    assert!(v["e"].as_str().unwrap_or_default().starts_with("replace: invalid regular expression"));
    // The replacement cannot grow the text past max_string_bytes.
    let out = run_with(json!({"script": "replace(\"aaaa\", \"\", \"xyz\", t)", "limits": {"max_string_bytes": 10}}));
    assert_eq!(out["kind"], "limit", "{out}");
    assert_eq!(var("replace(\"ab\", \"\", \"-\", t)", "t"), "-a-b-");
}

#[test]
fn stamp_to_datetime() {
    assert_eq!(var("stampToDatetime(0, %Y-%m-%d %H:%M:%S, 0, t)", "t"), "1970-01-01 00:00:00");
    assert_eq!(var("stampToDatetime(0, \"%Y-%m-%dT%H:%M:%S%z\", , t)", "t"), "1970-01-01T00:00:00+0000");
    assert_eq!(var("stampToDatetime(1700000000, %Y-%m-%d %H:%M:%S, 3600, t)", "t"), "2023-11-14 23:13:20");
    assert_eq!(var("stampToDatetime(\"1700000000.5\", %H:%M:%S%.3f, -0.25, t)", "t"), "22:13:20.250");
    assert_eq!(var("stampToDatetime(-86400, %d/%m/%Y, 0, t)", "t"), "31/12/1969");
    assert_eq!(var("stampToDatetime(0, %Z, 0, t)", "t"), "UTC");
    assert_eq!(var("stampToDatetime(0, , 0, t)", "t"), "");
    for (args, expect) in [
        ("0, %Q, 0, t", "invalid date format '%Q'"),
        ("0, \"%Y %\", 0, t", "invalid date format"),
        ("abc, %Y, 0, t", "'timestamp' must be a number of seconds"),
        ("0, %Y, x, t", "'TimeDelta' must be a number of seconds"),
        ("1e300, %Y, 0, t", "out of range"),
        ("[1], %Y, 0, t", "must be a number"),
    ] {
        let msg = fails(&format!("stampToDatetime({args})"), "runtime");
        assert!(msg.contains(expect), "stampToDatetime({args}): {msg}");
    }
}

#[test]
fn get_time_stamp() {
    assert_eq!(var("getTimeStamp(\"2023-11-14 22:13:20\", %Y-%m-%d %H:%M:%S, 0, t)", "t"), 1700000000.0);
    assert_eq!(var("getTimeStamp(\"2023-11-14 23:13:20 +0100\", \"%Y-%m-%d %H:%M:%S %z\", 0, t)", "t"), 1700000000.0);
    assert_eq!(var("getTimeStamp(2024-01-01, %Y-%m-%d, 0, t)", "t"), 1704067200.0);
    assert_eq!(var("getTimeStamp(2024-01-01, %Y-%m-%d, 60, t)", "t"), 1704067260.0);
    assert_eq!(var("getTimeStamp(\"01/01/2024 10:30\", %d/%m/%Y %H:%M, \"-1.5\", t)", "t"), 1704105000.0 - 1.5);
    // Round trip.
    let script = "stampToDatetime(1234567890, %Y-%m-%dT%H:%M:%S, 0, s)\ngetTimeStamp(s, %Y-%m-%dT%H:%M:%S, 0, t)";
    assert_eq!(var(script, "t"), 1234567890.0);
    for (args, expect) in [
        ("\"2024-13-01\", %Y-%m-%d, 0, t", "cannot read '2024-13-01'"),
        ("\"hello\", %Y-%m-%d, 0, t", "cannot read"),
        ("\"10:30\", %H:%M, 0, t", "cannot read"),
        ("\"2024\", %Q, 0, t", "invalid date format"),
    ] {
        let msg = fails(&format!("getTimeStamp({args})"), "runtime");
        assert!(msg.contains(expect), "getTimeStamp({args}): {msg}");
    }
}

#[test]
fn date_time_at_fixed_instants_and_zones() {
    use crate::commands::datetime::date_time_at;
    let limits = Limits::default();
    let at = |ts: i64| chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    let f = |ts: i64, fmt: &str, delta: f64, tz: &str| match date_time_at(at(ts), fmt, delta, tz, &limits) {
        Ok(crate::value::Value::Str(s)) => s.to_string(),
        Ok(other) => format!("{other:?}"),
        Err(e) => e.message,
    };
    let summer = 1719835200; // 2024-07-01 12:00 UTC
    let winter = 1704110400; // 2024-01-01 12:00 UTC
    assert_eq!(f(summer, "%Y-%m-%d %H:%M %Z", 0.0, ""), "2024-07-01 12:00 UTC");
    assert_eq!(f(summer, "%Y-%m-%d %H:%M %Z", 0.0, "UTC"), "2024-07-01 12:00 UTC");
    assert_eq!(f(summer, "%Y-%m-%d %H:%M %Z %z", 0.0, "Europe/Madrid"), "2024-07-01 14:00 CEST +0200");
    assert_eq!(f(winter, "%Y-%m-%d %H:%M %Z %z", 0.0, "Europe/Madrid"), "2024-01-01 13:00 CET +0100");
    assert_eq!(f(winter, "%H:%M", 0.0, "America/New_York"), "07:00");
    assert_eq!(f(winter, "%H:%M", 0.0, "Asia/Kolkata"), "17:30");
    assert_eq!(f(winter, "%H:%M", 0.0, "europe/madrid"), "13:00");
    assert_eq!(f(winter, "%H:%M %Z", 0.0, "Etc/GMT+3"), "09:00 -03");
    assert_eq!(f(winter, "%H:%M", 5400.0, "UTC"), "13:30");
    assert_eq!(f(winter, "%Y", 0.0, "Mars/Base"), "getDateTime: unknown time zone 'Mars/Base'");
    assert_eq!(f(winter, "%Q", 0.0, ""), "getDateTime: invalid date format '%Q'");
    match date_time_at(at(winter), "", 1.5, "Europe/Madrid", &limits) {
        Ok(crate::value::Value::Float(x)) => assert_eq!(x, 1704110401.5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn get_date_time_now() {
    let v = vars(
        "getDateTime(%Y-%m-%d, 0, , d)\ngetDateTime(, 0, , t)\ngetDateTime(\"%H:%M %Z\", 3600, Europe/Madrid, m)\n\
         x = getDateTime(\"%Y\", \"\", \"UTC\")",
    );
    let d = v["d"].as_str().unwrap_or_default();
    assert_eq!(d.len(), 10, "{d}");
    assert!(d.starts_with("20") && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-', "{d}");
    let t = v["t"].as_f64().unwrap_or_default();
    assert!(t > 1.7e9 && t < 4.0e9, "{t}");
    let m = v["m"].as_str().unwrap_or_default();
    assert!(m.ends_with(" CET") || m.ends_with(" CEST"), "{m}");
    assert_eq!(v["x"].as_str().map(str::len), Some(4));
    let msg = fails("getDateTime(%Y, 0, Nowhere/City, d)", "runtime");
    assert_eq!(msg, "line 1: getDateTime: unknown time zone 'Nowhere/City'");
    let v = vars("try()\ngetDateTime(%Y, 0, Nowhere/City, d)\nexception(e)\nend()");
    assert_eq!(v["e"], "getDateTime: unknown time zone 'Nowhere/City'");
    assert!(fails("getDateTime(%Y, abc, , d)", "runtime").contains("'TimeDelta' must be a number"));
}
