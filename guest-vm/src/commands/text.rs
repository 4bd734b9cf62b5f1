//! Text and crypto commands: `encodeSHA256`, `encodeMD5`, `randomString`,
//! `replace`, `getRegex`.
//!
//! Regexes use `regex-lite`, whose matching runs in O(pattern * input) time
//! (no backtracking), so untrusted patterns cannot stall the interpreter.

use std::fmt::Write as _;

use md5::Md5;
use regex_lite::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::{Args, integer_arg};
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::Limits;
use crate::value::Value;

/// Longest accepted regular expression or character class, in bytes.
const MAX_PATTERN_BYTES: usize = 4096;
/// Bound on the compiled size of a regex (regex-lite's own default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most distinct characters a `randomString` class may hold.
const MAX_CLASS_CHARS: u32 = 1 << 16;

fn rt(msg: impl Into<String>) -> Error {
    Error::runtime(msg)
}

/// `encodeSHA256`
pub(super) fn encode_sha256(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let text = interp.text(a.value(0)?)?;
    interp.set_var(a.target(1)?, Value::str(sha256_hex(&text)));
    Ok(())
}

/// `encodeMD5`
pub(super) fn encode_md5(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let text = interp.text(a.value(0)?)?;
    interp.set_var(a.target(1)?, Value::str(md5_hex(&text)));
    Ok(())
}

/// `randomString`
pub(super) fn random_string(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let pattern = interp.text(a.value(0)?)?;
    let class = parse_class(&pattern)?;
    let length = integer_arg(a.value(1)?, "randomString", "Length")?;
    let length = usize::try_from(length)
        .map_err(|_| Error::runtime(format!("randomString: 'Length' must not be negative, got {length}")))?;
    if length > interp.limits.max_string_bytes {
        return Err(interp.limits.string_error());
    }
    let out = random_chars(&class, length, &interp.limits)?;
    interp.set_var(a.target(2)?, Value::str(out));
    Ok(())
}

/// `replace`
pub(super) fn replace(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let source = interp.text(a.value(0)?)?;
    let re = compile("replace", &interp.text(a.value(1)?)?)?;
    let new_value = interp.text(a.value(2)?)?;
    let out = replace_all(&re, &source, &new_value, &interp.limits)?;
    interp.set_var(a.target(3)?, Value::str(out));
    Ok(())
}

/// `getRegex`
pub(super) fn get_regex(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let source = interp.text(a.value(0)?)?;
    let re = compile("getRegex", &interp.text(a.value(1)?)?)?;
    let found = all_matches(&re, &source).map_or(Value::Null, Value::str);
    interp.set_var(a.target(2)?, found);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Lowercase hex SHA-256 of the text.
fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lowercase hex MD5 of the text.
fn md5_hex(text: &str) -> String {
    hex(&Md5::digest(text.as_bytes()))
}

// ---- randomString ----------------------------------------------------------

/// Parses a character class such as `[A-Za-z0-9_]` into its distinct
/// characters, sorted. Supported: single characters, ranges `a-z`, escapes
/// `\d` `\w` `\s` `\n` `\t` `\r` and `\` before any non-alphanumeric
/// character (`\]`, `\-`, `\\`). A `-` first or last is literal. Negated
/// classes (`[^...]`) are not supported.
pub(crate) fn parse_class(pattern: &str) -> Result<Vec<char>, Error> {
    let bad = |why: &str| rt(format!("randomString: invalid character class '{pattern}': {why}"));
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(bad(&format!("longer than {MAX_PATTERN_BYTES} bytes")));
    }
    let inner = pattern
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .ok_or_else(|| bad("it must be one class in brackets, such as [A-Za-z0-9]"))?;
    if inner.starts_with('^') {
        return Err(bad("negated classes ([^...]) are not supported"));
    }
    // Items: a single char, an unescaped `-`, or a predefined set.
    enum Item {
        Char(char),
        Dash,
        Set(&'static [(char, char)]),
    }
    let mut items = Vec::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        items.push(match c {
            '\\' => match it.next() {
                None => return Err(bad("it ends with a lone backslash")),
                Some('d') => Item::Set(&[('0', '9')]),
                Some('w') => Item::Set(&[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')]),
                Some('s') => Item::Set(&[('\t', '\r'), (' ', ' ')]),
                Some('n') => Item::Char('\n'),
                Some('t') => Item::Char('\t'),
                Some('r') => Item::Char('\r'),
                Some(e) if e.is_alphanumeric() => return Err(bad(&format!("unknown escape '\\{e}'"))),
                Some(e) => Item::Char(e),
            },
            '[' => return Err(bad("an unescaped '[' inside the class")),
            ']' => return Err(bad("an unescaped ']' inside the class")),
            '-' => Item::Dash,
            c => Item::Char(c),
        });
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut k = 0;
    while let Some(item) = items.get(k) {
        match (item, items.get(k + 1), items.get(k + 2)) {
            (Item::Char(lo), Some(Item::Dash), Some(Item::Char(hi))) => {
                if lo > hi {
                    return Err(bad(&format!("range '{lo}-{hi}' is out of order")));
                }
                ranges.push((*lo, *hi));
                k += 3;
                continue;
            }
            (Item::Char(_) | Item::Set(_), Some(Item::Dash), Some(Item::Set(_) | Item::Dash))
            | (Item::Set(_), Some(Item::Dash), Some(Item::Char(_))) => {
                return Err(bad("a range must go from one character to another"));
            }
            (Item::Char(c), _, _) => ranges.push((*c, *c)),
            (Item::Dash, _, _) => ranges.push(('-', '-')),
            (Item::Set(set), _, _) => ranges.extend_from_slice(set),
        }
        k += 1;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(char, char)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if (lo as u32) <= (last.1 as u32).saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let total: u32 = merged.iter().map(|(lo, hi)| *hi as u32 - *lo as u32 + 1).sum();
    if total > MAX_CLASS_CHARS {
        return Err(bad(&format!("more than {MAX_CLASS_CHARS} characters")));
    }
    let out: Vec<char> = merged.into_iter().flat_map(|(lo, hi)| lo..=hi).collect();
    if out.is_empty() {
        return Err(bad("the class is empty"));
    }
    Ok(out)
}

/// `length` characters drawn uniformly from `class` using the host's secure
/// random source (rejection sampling: no modulo bias).
fn random_chars(class: &[char], length: usize, limits: &Limits) -> Result<String, Error> {
    let n = u64::try_from(class.len()).unwrap_or(u64::MAX);
    if n == 0 || n > u64::from(u32::MAX) {
        return Err(rt("randomString: the character class is empty"));
    }
    // Accept x < bound, the largest multiple of n that fits in 2^32.
    let bound = ((1u64 << 32) / n) * n;
    let mut out = String::with_capacity(length.min(limits.max_string_bytes));
    let mut produced = 0usize;
    let mut buf = [0u8; 1024];
    while produced < length {
        getrandom::fill(&mut buf).map_err(|e| rt(format!("randomString: no random source available: {e}")))?;
        for chunk in buf.chunks_exact(4) {
            if produced == length {
                break;
            }
            let x = u64::from(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
            if x >= bound {
                continue;
            }
            let idx = usize::try_from(x % n).unwrap_or(0);
            if let Some(&c) = class.get(idx) {
                out.push(c);
                produced += 1;
            }
        }
        if out.len() > limits.max_string_bytes {
            return Err(limits.string_error());
        }
    }
    Ok(out)
}

// ---- regexes ---------------------------------------------------------------

/// Rewrites the AVAP pattern for regex-lite: an unescaped space outside a
/// character class matches any white space (`\s`).
pub(crate) fn translate_spaces(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Just after `[` or `[^`: a `]` there is literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                class_start = false;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                continue;
            }
            ']' if in_class && !class_start => in_class = false,
            ' ' if !in_class => {
                out.push_str(r"\s");
                continue;
            }
            _ => {}
        }
        class_start = false;
        out.push(c);
    }
    out
}

/// Compiles a pattern (after the space rule) with bounded size; every
/// problem is a runtime error naming the pattern.
fn compile(cmd: &str, pattern: &str) -> Result<Regex, Error> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(rt(format!("{cmd}: the regular expression is longer than {MAX_PATTERN_BYTES} bytes")));
    }
    RegexBuilder::new(&translate_spaces(pattern))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| rt(format!("{cmd}: invalid regular expression '{pattern}': {}", one_line(&e.to_string()))))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replace-all; `$1`, `${name}` in the replacement refer to groups (`$$` is a
/// literal `$`). The result is bounded by `max_string_bytes` as it grows.
fn replace_all(re: &Regex, text: &str, replacement: &str, limits: &Limits) -> Result<String, Error> {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(text.get(last..m.start()).unwrap_or_default());
        caps.expand(replacement, &mut out);
        last = m.end();
        if out.len() > limits.max_string_bytes {
            return Err(limits.string_error());
        }
    }
    out.push_str(text.get(last..).unwrap_or_default());
    if out.len() > limits.max_string_bytes {
        return Err(limits.string_error());
    }
    Ok(out)
}

/// All matches concatenated in order; `None` when nothing matches.
fn all_matches(re: &Regex, text: &str) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    for m in re.find_iter(text) {
        any = true;
        out.push_str(m.as_str());
    }
    any.then_some(out)
}
