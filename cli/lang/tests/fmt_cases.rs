//! The formatter (`avap_lang::fmt::format`) on every case folder
//! (`tests/cases/language/*`, `tests/cases/capability/*`): the formatted
//! script parses to the same program, formatting is idempotent, and the
//! language cases, run natively before and after, give the same output.
//! Then a few hundred mutated scripts: no panic, and the same two
//! properties whenever one parses.

use std::path::{Path, PathBuf};

use avap_guest_vm::ast::Program;
use avap_lang::fmt::format;
use avap_tests::case::{self, Case};
use serde_json::{Map, Value, json};

fn cases(group: &str) -> Vec<Case> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases").join(group);
    let dirs = case::folders(&root).unwrap_or_else(|e| panic!("{e}"));
    assert!(!dirs.is_empty(), "no case folders in {}", root.display());
    dirs.iter().map(|d| Case::load(d).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// The main block and the functions sorted by name.
fn fingerprint(program: &Program) -> String {
    let mut functions: Vec<_> = program.functions.iter().collect();
    functions.sort_by(|a, b| a.0.cmp(b.0));
    format!("{:?}\n{:?}", program.main, functions)
}

/// `format` keeps the program and is idempotent on `source`; `Some` of the
/// formatted text when `source` parses.
fn check_properties(source: &str, what: &str) -> Option<String> {
    match avap_guest_vm::parser::parse(source) {
        Err(diags) => {
            assert_eq!(format(source), Err(diags), "{what}: an unparsable script gives its diagnostics");
            None
        }
        Ok(program) => {
            let formatted = format(source).unwrap_or_else(|d| panic!("{what}: parses but does not format: {d:?}"));
            let again = avap_guest_vm::parser::parse(&formatted)
                .unwrap_or_else(|d| panic!("{what}: the formatted script does not parse: {d:?}\n{formatted}"));
            assert_eq!(
                fingerprint(&again),
                fingerprint(&program),
                "{what}: another program after formatting\n--- before\n{source}\n--- after\n{formatted}"
            );
            assert_eq!(format(&formatted).as_ref(), Ok(&formatted), "{what}: not idempotent");
            // Line for line: a line is blank after formatting if and only if
            // it was before; only blank lines at the end are dropped.
            let (old, new): (Vec<&str>, Vec<&str>) = (source.split('\n').collect(), formatted.split('\n').collect());
            for (i, line) in old.iter().enumerate() {
                let kept = new.get(i).filter(|_| i + 1 < new.len());
                match kept {
                    Some(n) => assert_eq!(n.is_empty(), line.trim().is_empty(), "{what}: line {}", i + 1),
                    None => assert!(line.trim().is_empty(), "{what}: line {} was dropped", i + 1),
                }
            }
            Some(formatted)
        }
    }
}

#[test]
fn every_case_keeps_its_program_and_is_idempotent() {
    let mut changed = Vec::new();
    let mut total = 0;
    for group in ["language", "capability"] {
        for case in cases(group) {
            total += 1;
            let what = format!("{group}/{}", case.name);
            if let Some(formatted) = check_properties(&case.script, &what)
                && formatted != case.script
            {
                changed.push(what);
            }
        }
    }
    eprintln!("the formatter changes {} of {total} case scripts: {changed:?}", changed.len());
}

/// `application/x-www-form-urlencoded` pairs, as the host reads a query.
fn query_pairs(query: &str) -> Vec<[String; 2]> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (b'+', _) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            [decode(k), decode(v)]
        })
        .collect()
}

/// The guest input the host writes for this case (as
/// guest-vm/tests/cases.rs builds it), with `script` in place of the case's.
fn guest_input(case: &Case, script: &str) -> Value {
    let mut input = Map::new();
    input.insert("script".into(), json!(script));
    if !case.request.variables.is_empty() {
        input.insert("variables".into(), Value::Object(case.request.variables.clone()));
    }
    if let Some(q) = &case.request.query {
        let pairs = query_pairs(q);
        if !pairs.is_empty() {
            input.insert("query".into(), json!(pairs));
        }
    }
    if !case.request.params.is_empty() {
        input.insert("body".into(), Value::Object(case.request.params.clone()));
    }
    Value::Object(input)
}

/// Runs natively on a thread with a large stack (unoptimised builds use
/// big frames; the recursion-limit case goes deep). Log durations, the one
/// field that always varies, are removed.
fn run(input: &Value) -> Value {
    let bytes = input.to_string().into_bytes();
    let output = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || avap_guest_vm::run_json(&bytes))
        .expect("spawning the interpreter's thread")
        .join()
        .expect("the interpreter panicked");
    let mut output: Value = serde_json::from_slice(&output).expect("the output is JSON");
    if let Some(Value::Array(logs)) = output.get_mut("logs") {
        for entry in logs {
            if let Value::Object(entry) = entry {
                entry.remove("duration_ms");
            }
        }
    }
    output
}

/// Where `a` and `b` differ: paths of values that are not equal (objects
/// with the same keys in the same order and arrays of the same length are
/// compared inside).
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => {
            for ((k, v), w) in x.iter().zip(y.values()) {
                differences(v, w, &format!("{path}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{path}/{i}"), out);
            }
        }
        (x, y) if x == y => {}
        _ => out.push(path.to_string()),
    }
}

#[test]
fn language_cases_give_the_same_output_formatted() {
    let mut compared = 0;
    for case in cases("language") {
        let Ok(formatted) = format(&case.script) else { continue };
        compared += 1;
        // The original before and after the formatted one: what differs
        // between its two runs is what varies from run to run (random
        // strings, the clock); a value that did not change across both
        // runs did not change during the formatted one either.
        let before = run(&guest_input(&case, &case.script));
        let output = run(&guest_input(&case, &formatted));
        let after = run(&guest_input(&case, &case.script));
        let mut varies = Vec::new();
        differences(&before, &after, "", &mut varies);
        let mut differ = Vec::new();
        differences(&before, &output, "", &mut differ);
        if !varies.is_empty() {
            eprintln!("{}: varies from run to run at {varies:?}", case.name);
        }
        differ.retain(|p| !varies.contains(p));
        assert!(
            differ.is_empty(),
            "{}: the formatted script's output differs at {differ:?}\n  original:  {before}\n  formatted: {output}",
            case.name
        );
    }
    assert!(compared > 40, "only {compared} language cases parse");
}

/// xorshift64*: deterministic mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// One mutation of `script`: a line truncated, characters deleted or
/// inserted, white space changed, lines swapped or duplicated.
fn mutate(script: &str, rng: &mut Rng) -> String {
    const BITS: &[&str] = &[
        "(", ")", "\"", "'", "`", "{", "}", "[", "]", "//", ",", ";", "=", "==", " ", "\t", "\r", "${", "\\", "ñ",
        "}\n",
    ];
    let mut lines: Vec<String> = script.split('\n').map(str::to_string).collect();
    let n = lines.len();
    let pick = rng.below(n);
    match rng.below(7) {
        0 => {
            if let Some(line) = lines.get_mut(pick) {
                let chars: Vec<char> = line.chars().collect();
                *line = chars.iter().take(rng.below(chars.len() + 1)).collect();
            }
        }
        1 => {
            if let Some(line) = lines.get_mut(pick) {
                let mut chars: Vec<char> = line.chars().collect();
                if !chars.is_empty() {
                    let at = rng.below(chars.len());
                    chars.remove(at);
                }
                *line = chars.into_iter().collect();
            }
        }
        2 => {
            if let Some(line) = lines.get_mut(pick) {
                let mut chars: Vec<char> = line.chars().collect();
                let at = rng.below(chars.len() + 1);
                let bit = BITS.get(rng.below(BITS.len())).copied().unwrap_or(" ");
                for (k, c) in bit.chars().enumerate() {
                    chars.insert(at + k, c);
                }
                *line = chars.into_iter().collect();
            }
        }
        3 => {
            // White space that keeps the script valid: around commas,
            // parentheses and `=`, and indentation.
            for line in &mut lines {
                let spaced = match rng.below(4) {
                    0 => line.replace(", ", ",").replace(" = ", "="),
                    1 => line.replace(',', " ,\t").replace('(', " ( ").replace(')', " ) "),
                    2 => format!("\t  {line}  \r"),
                    _ => line.trim().to_string(),
                };
                *line = spaced;
            }
        }
        4 => {
            let other = rng.below(n);
            lines.swap(pick, other);
        }
        5 => {
            if let Some(line) = lines.get(pick).cloned() {
                lines.insert(pick, line);
            }
        }
        _ => {
            lines.truncate(pick);
        }
    }
    lines.join(if rng.below(4) == 0 { "\r\n" } else { "\n" })
}

#[test]
fn mutated_scripts_never_panic_and_keep_the_properties() {
    let mut rng = Rng(0x5eed_f0f0_1234_5678);
    let mut scripts: Vec<String> = cases("language").into_iter().chain(cases("capability")).map(|c| c.script).collect();
    scripts.push(String::new());
    let (mut total, mut parsed) = (0, 0);
    for script in &scripts {
        for round in 0..6 {
            let mut mutated = script.clone();
            for _ in 0..=round % 3 {
                mutated = mutate(&mutated, &mut rng);
            }
            total += 1;
            if check_properties(&mutated, &format!("mutation of {script:?}: {mutated:?}")).is_some() {
                parsed += 1;
            }
        }
    }
    eprintln!("{total} mutated scripts, {parsed} of them parse");
    assert!(total >= 300 && parsed > total / 5, "{total} mutated, {parsed} parse");
}
