//! "Never panic on any input": random token soup, random printable text and
//! mutated valid scripts go through tokenizer, parser and evaluator.

use proptest::prelude::*;

use super::run_bytes;
use crate::run_json;

const SAMPLES: &[&str] = &[
    "addVar(a, 1)\naddResult(a)",
    "total = 0\nstartLoop(i, 1, 10)\ntotal = total + i ** 2 // 3\nendLoop()\naddResult(total)",
    "if(x, \"1\", >=)\naddVar(r, yes)\nelse()\naddVar(r, no)\nend()",
    "try()\nfoo()\nexception(e)\naddResult(e)\nend()",
    "function f(a, b) {\nreturn a * b + f(a, b - 1)\n}\nx = f(2, 3)",
    "x = [1, {\"k\": `t ${x}`}, -2.5e3][0]\ny = x[-1]",
    "AddvariableToJSON(k, v, d)\nvariableFromJSON(d, k, o)\nvariableToList(o, l)\nitemFromList(l, -1, z)",
    "x = not (1 < 2 <= 3) or 'a' + \"b\" == `ab`",
    "encodeSHA256(a, h)\nencodeMD5(h, m)\nrandomString([a-z0-9], 8, r)\nreplace(r, [0-9], _, s)\ngetRegex(s, \\w+, g)",
    "getDateTime(%Y-%m-%d %H:%M %Z, 3600, Europe/Madrid, d)\ngetTimeStamp(2024-01-01, %Y-%m-%d, 0, t)\nstampToDatetime(t, %c, -1.5, s)",
];

const TOKENS: &[&str] = &[
    "addVar",
    "encodeSHA256",
    "encodeMD5",
    "randomString",
    "replace",
    "getRegex",
    "getDateTime",
    "getTimeStamp",
    "stampToDatetime",
    "[A-Za-z0-9]",
    "\\d+",
    "%Y-%m-%d",
    "Europe/Madrid",
    "(",
    ")",
    ",",
    "x",
    "y",
    "=",
    "==",
    "1",
    "-2.5",
    "\"s\"",
    "'q'",
    "`t ${x}`",
    "[",
    "]",
    "{",
    "}",
    ":",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "if",
    "else()",
    "end()",
    "startLoop",
    "endLoop()",
    "try()",
    "exception",
    "function",
    "return",
    "\n",
    " ",
    "and",
    "or",
    "not",
    "True",
    "None",
    "addResult",
    "itemFromList",
    "f",
    "<",
    ">=",
    "9223372036854775807",
    "1e308",
    "\\",
    "$",
    "\"",
    "`",
    "${",
    "_status",
    "RequestGet",
    "greet",
    "broken",
    "legacyPyCmd",
];

fn run_script(script: &str) {
    let catalog = serde_json::json!({
        "functions": [
            {"name": "greet", "source": "function greet(who) {\n  return `hi ${who}` + greet2(who)\n}"},
            {"name": "greet2", "source": "function greet2(w) {\n  addVar(z, w)\n  return greet(w)\n}"},
            {"name": "broken", "source": "function broken(a {"},
        ],
        "unsupported": ["legacyPyCmd"],
    });
    for mode in ["run", "check"] {
        let input = serde_json::json!({"script": script, "variables": {"x": 1, "y": [1, 2]}, "catalog": catalog, "mode": mode,
            "limits": {"max_steps": 20000, "max_loop_iterations": 2000}});
        let out = run_bytes(input.to_string().into_bytes());
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
        assert!(parsed.is_ok(), "output is not JSON");
    }
    let _ = crate::check(script);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_printable_text(s in "[ -~\n\t]{0,200}") {
        run_script(&s);
    }

    #[test]
    fn random_unicode(s in any::<String>()) {
        run_script(&s);
    }

    #[test]
    fn token_soup(toks in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60)) {
        run_script(&toks.join(""));
        run_script(&toks.join(" "));
    }

    #[test]
    fn mutated_samples(idx in 0..SAMPLES.len(), pos in any::<prop::sample::Index>(), cut in 0usize..20, insert in proptest::sample::select(TOKENS)) {
        let base: Vec<char> = SAMPLES[idx].chars().collect();
        let p = pos.index(base.len() + 1);
        let end = (p + cut).min(base.len());
        let mut s: String = base[..p].iter().collect();
        s.push_str(insert);
        s.extend(base[end..].iter());
        run_script(&s);
    }

    #[test]
    fn random_bytes_as_input(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let out = run_json(&bytes);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }
}
