//! The canonical layout of AVAP source (`avap fmt`): a script that parses
//! is rewritten so that it parses to the same program, statement for
//! statement and line for line; a script that does not parse is left alone
//! ([`format`] returns its syntax diagnostics).
//!
//! # The rules
//!
//! **Lines.** One output line per input line: lines are never joined, split,
//! moved or removed, so every line number in an error or a log stays the
//! same. The only exception is the blank lines at the end of the file,
//! which are dropped. `\r\n` becomes `\n`; white space at both ends of a
//! line is removed (the parser ignores it); a blank line becomes empty. The
//! output ends with exactly one `\n`; an empty (or all blank) file becomes
//! the empty text.
//!
//! **Indentation.** Four spaces per open block, whatever was written
//! (spaces, tabs). The blocks:
//!
//! - `if(...)` ... `else()` ... `end()`;
//! - `startLoop(...)` ... `endLoop()`, and `while(...)` ... `end()` (or `endLoop()`);
//! - `try()` ... `exception(...)` (or `e = exception(...)`) ... `end()`; a
//!   handler whose `end()` is left out runs to the end of the file or to
//!   the `}` of its function, as the parser reads it;
//! - `function name(params) {` ... `}`.
//!
//! The opener, `else()` / `exception()` and the closer sit at the level of
//! the opener, the lines between them one level deeper. A comment line is
//! indented at the level where it stands (also just before a closer: it is
//! still inside the block). A blank line gets no indentation.
//!
//! **Command calls.** On a statement line that is a call (`name(args)`,
//! `target = name(args)`: commands, block markers, calls of functions),
//! there is no space between the name and `(`, none after `(` nor before
//! `)`, and the arguments are trimmed and separated by `, `:
//! `if (a,"b" , =)` becomes `if(a, "b", =)`. Arguments are split as the
//! parser splits them: only at commas outside strings (`'`, `"`, back-quoted
//! templates with their `${...}`) and outside `()`, `[]`, `{}`. Each
//! argument is kept byte for byte apart from the white space around it, so
//! bare (raw) arguments such as `\d+`, `%Y-%m-%d`, `Europe/Madrid` or `=`
//! are untouched. An empty argument stays empty, with its separator:
//! `RequestGet(url,,,r)` becomes `RequestGet(url, , , r)` and
//! `getListLen(xs,)` becomes `getListLen(xs, )` (the one place where a
//! space precedes `)`). `f( )` becomes `f()`.
//!
//! **Assignments.** `x=expr` becomes `x = expr`: only the `=` after the name
//! is spaced; the expression is kept as written (no operator spacing:
//! `x=a+1` becomes `x = a+1`). `x = f(a,b)`, where the whole value is one
//! call, is laid out like a call statement, `x = f(a, b)`, provided that
//! gives the very same tokens (`str(not"a,b")`, where the argument splitter
//! and the expression tokenizer disagree, is kept). Calls nested in an
//! expression or an argument are expression text and kept.
//!
//! **Functions.** `function f(a,b){` becomes `function f(a, b) {`. The `{`
//! ends the header's line: the parser accepts it nowhere else (a `{` on a
//! line of its own is a syntax error), so there is nothing to move. A body
//! written on the header's line stays there: `function f(a){ return a*2 }`
//! becomes `function f(a) { return a*2 }`, its statements separated by
//! `; `, each laid out by these rules; such a line opens no block. A body
//! that starts on the header's line and goes on below
//! (`function g(a){ x = a * 3`) opens the function's block like a header.
//! `return` is followed by one space when it was followed by white space;
//! its expression is kept as written.
//!
//! **Trailing comments.** A `//` comment after a statement is kept, with
//! exactly one space before it: `addVar(a, 1)    // note`,
//! `end()// note` and `}   // note` get one space. The comment is found as
//! the parser finds it: after a call, whatever follows its `)`; after an
//! assignment or a `return`, only where the parser cuts a comment off (it
//! reads the whole line first), so `x = a // 2` stays a division and is not
//! touched. The comment's own text is kept as written.
//!
//! **Kept as written** (after indentation and trimming): comment lines;
//! expressions (operators, brackets, strings, nested calls); the text after
//! `return` when no white space follows the word (`return(x)`); any line
//! whose form this module does not recognise.
//!
//! # Guarantees
//!
//! The result parses to the same program as the source (compared on the
//! syntax tree, which records every statement's line), and formatting it
//! again changes nothing. Both are checked on every call: should a rewrite
//! ever fail either check (a bug here, never expected), the result falls
//! back to the indentation and white-space rules alone, which cannot
//! change what a line means because the parser ignores the white space at
//! both ends of a line. [`format`] never panics.

use avap_guest_vm::ast::Program;
use avap_guest_vm::builtins::Builtin;
use avap_guest_vm::tokenizer::{Tok, is_ident_char, is_ident_start, opens_string, skip_string, tokenize};
use avap_guest_vm::{Diagnostic, parser};

/// One level of indentation.
const INDENT: &str = "    ";

/// `source` in the canonical layout, or the syntax problems that stop it
/// from being formatted (a file that does not parse is left alone).
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    let formatted = format_unchecked(source)?;
    // Indentation adds bytes: a script the host takes must stay one it takes.
    let max = avap_guest_vm::Limits::default().max_script_bytes;
    if formatted.len() > max && source.len() <= max {
        return Err(vec![Diagnostic::new(
            1,
            1,
            format!(
                "formatted, the script would exceed max_script_bytes ({max}) and a host would refuse it; left as written"
            ),
        )]);
    }
    Ok(formatted)
}

fn format_unchecked(source: &str) -> Result<String, Vec<Diagnostic>> {
    let program = parser::parse(source)?;
    let canonical = layout(source, Style::Canonical);
    if canonical == source || (keeps_program(&canonical, &program) && layout(&canonical, Style::Canonical) == canonical)
    {
        return Ok(canonical);
    }
    Ok(layout(source, Style::Indentation))
}

/// Whether `text` parses to `program`.
fn keeps_program(text: &str, program: &Program) -> bool {
    parser::parse(text).is_ok_and(|p| fingerprint(&p) == fingerprint(program))
}

/// The whole program as text: the main block and the functions by name
/// (`functions` is a map, its order is not the program's).
fn fingerprint(program: &Program) -> String {
    let mut functions: Vec<_> = program.functions.iter().collect();
    functions.sort_by(|a, b| a.0.cmp(b.0));
    format!("{:?}\n{:?}", program.main, functions)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Every rule of the module docs.
    Canonical,
    /// Indentation and white space at the ends of lines only.
    Indentation,
}

/// An open block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `if`, `startLoop`, `while`, `try`.
    Block,
    Function,
}

/// What a statement does to the open blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Open(Frame),
    /// `else()`, `exception()`: at the opener's level, the block goes on.
    Middle,
    /// `end()`, `endLoop()`.
    Close,
    /// `}`: closes the function and any handler left open in it.
    CloseFunction,
}

fn layout(source: &str, style: Style) -> String {
    let mut out = String::with_capacity(source.len() + source.len() / 4);
    let mut open: Vec<Frame> = Vec::new();
    // Blank lines not written yet: dropped if nothing follows them.
    let mut blank = 0usize;
    for raw in source.split('\n') {
        let text = raw.trim();
        if text.is_empty() {
            blank += 1;
            continue;
        }
        out.extend(std::iter::repeat_n('\n', blank));
        blank = 0;
        let chars: Vec<char> = text.chars().collect();
        let (effects, canonical) = read_line(&chars);
        let level = apply(&mut open, &effects);
        for _ in 0..level {
            out.push_str(INDENT);
        }
        match style {
            Style::Canonical => out.push_str(&canonical),
            Style::Indentation => out.push_str(text),
        }
        out.push('\n');
    }
    out
}

/// Applies a line's effects to the open blocks; returns the line's level.
fn apply(open: &mut Vec<Frame>, effects: &[Effect]) -> usize {
    let mut level = None;
    for effect in effects {
        match effect {
            Effect::Open(frame) => {
                level.get_or_insert(open.len());
                open.push(*frame);
            }
            Effect::Middle => {
                level.get_or_insert(open.len().saturating_sub(1));
            }
            Effect::Close => {
                if open.last() == Some(&Frame::Block) {
                    open.pop();
                }
                level.get_or_insert(open.len());
            }
            Effect::CloseFunction => {
                while let Some(frame) = open.pop() {
                    if frame == Frame::Function {
                        break;
                    }
                }
                level.get_or_insert(open.len());
            }
        }
    }
    level.unwrap_or(open.len())
}

/// One trimmed, non-blank line: its effects on the blocks and its
/// canonical text (without indentation).
fn read_line(chars: &[char]) -> (Vec<Effect>, String) {
    if chars.starts_with(&['/', '/']) {
        return (Vec::new(), chars.iter().collect());
    }
    if let Some(function) = function_line(chars) {
        return function.render(chars);
    }
    let stmt = statement(chars);
    (stmt.effect.into_iter().collect(), stmt.text)
}

/// One statement (a line, or a piece of a one-line function body), laid out.
struct Statement {
    effect: Option<Effect>,
    text: String,
}

impl Statement {
    fn as_written(chars: &[char]) -> Statement {
        Statement { effect: None, text: chars.iter().collect() }
    }
}

/// Lays out one trimmed statement, read the way the parser reads it
/// (`parse_line` in guest-vm's parser).
fn statement(chars: &[char]) -> Statement {
    if chars.first() == Some(&'}') {
        let rest = chars.get(skip_ws(chars, 1)..).unwrap_or_default();
        return if rest.is_empty() {
            Statement { effect: Some(Effect::CloseFunction), text: "}".to_string() }
        } else if rest.starts_with(&['/', '/']) {
            Statement { effect: Some(Effect::CloseFunction), text: format!("}} {}", rest.iter().collect::<String>()) }
        } else {
            Statement::as_written(chars)
        };
    }
    let (word, after) = read_ident(chars, 0);
    if word.is_empty() {
        return Statement::as_written(chars);
    }
    let boundary = chars.get(after).is_none_or(|c| !is_ident_char(*c));
    if word == "return" && boundary {
        return return_statement(chars, after).unwrap_or_else(|| Statement::as_written(chars));
    }
    if word == "function" && boundary {
        // A header the parser rejects (no `{`): not ours to lay out.
        return Statement::as_written(chars);
    }
    let j = skip_ws(chars, after);
    let laid_out = match chars.get(j) {
        Some('(') => call(chars, None, &word, j),
        Some('=') if chars.get(j + 1) != Some(&'=') => {
            let k = skip_ws(chars, j + 1);
            let (callee, after_callee) = read_ident(chars, k);
            let m = skip_ws(chars, after_callee);
            if Builtin::from_name(&callee).is_some() && chars.get(m) == Some(&'(') {
                // `n = getListLen(xs)`: a command with its target in front.
                call(chars, Some(&word), &callee, m)
            } else {
                assignment(chars, &word, k)
            }
        }
        _ => None,
    };
    laid_out.unwrap_or_else(|| Statement::as_written(chars))
}

/// `[target = ]name(args)[ // comment]`, the `(` at `open`. `None` when
/// the call does not read as one (then it is kept as written).
fn call(chars: &[char], target: Option<&str>, name: &str, open: usize) -> Option<Statement> {
    let (spans, close) = split_args(chars, open + 1)?;
    // The parser accepts nothing after the `)` but a comment.
    let tail = chars.get(skip_ws(chars, close + 1)..).unwrap_or_default();
    if !tail.is_empty() && !tail.starts_with(&['/', '/']) {
        return None;
    }
    let mut text = String::new();
    if let Some(target) = target {
        text.push_str(target);
        text.push_str(" = ");
    }
    text.push_str(name);
    text.push('(');
    push_args(&mut text, chars, &spans);
    text.push(')');
    push_comment(&mut text, tail);
    let effect = match name {
        "if" | "startLoop" | "while" | "try" => Some(Effect::Open(Frame::Block)),
        "else" | "exception" => Some(Effect::Middle),
        "end" | "endLoop" => Some(Effect::Close),
        _ => None,
    };
    Some(Statement { effect, text })
}

/// The arguments, trimmed, separated by `, ` (an empty one stays empty).
fn push_args(text: &mut String, chars: &[char], spans: &[(usize, usize)]) {
    for (n, &(from, to)) in spans.iter().enumerate() {
        if n > 0 {
            text.push_str(", ");
        }
        text.extend(trim(chars.get(from..to).unwrap_or_default()));
    }
}

/// ` // comment` (one space before it), when there is one.
fn push_comment(text: &mut String, comment: &[char]) {
    if !comment.is_empty() {
        text.push(' ');
        text.extend(comment);
    }
}

/// `name = value[ // comment]`, the value starting at `k`. The value is kept
/// as written, unless it is one call (`f(a,b)`), laid out as a call.
fn assignment(chars: &[char], name: &str, k: usize) -> Option<Statement> {
    let cut = comment_cut(chars, |seg| {
        seg.get(k..).is_some_and(|v| !v.is_empty() && parser::parse_expression(&v.iter().collect::<String>()).is_ok())
    })?;
    let value = trim_end(chars.get(k..cut).unwrap_or_default());
    if value.is_empty() {
        return None;
    }
    let mut text = format!("{name} = ");
    text.push_str(&whole_call(value).unwrap_or_else(|| value.iter().collect()));
    push_comment(&mut text, chars.get(cut..).unwrap_or_default());
    Some(Statement { effect: None, text })
}

/// An expression that is exactly one call, `name(args)`, laid out as a
/// call. `None` for any other expression, and when the layout would not
/// give the same tokens (the expression's parse depends on nothing else).
fn whole_call(value: &[char]) -> Option<String> {
    let (name, name_end) = read_ident(value, 0);
    let open = skip_ws(value, name_end);
    if name.is_empty() || value.get(open) != Some(&'(') {
        return None;
    }
    let (spans, close) = split_args(value, open + 1)?;
    if close + 1 != value.len() {
        return None;
    }
    let mut text = name;
    text.push('(');
    push_args(&mut text, value, &spans);
    text.push(')');
    let tokens = |chars: &[char]| tokenize(chars, 1, 1).map(|ts| ts.into_iter().map(|t| t.tok).collect::<Vec<_>>());
    let laid_out: Vec<char> = text.chars().collect();
    match (tokens(value), tokens(&laid_out)) {
        (Ok(a), Ok(b)) if a == b => Some(text),
        _ => None,
    }
}

/// `return[ value][ // comment]`, the word ending at `after`.
fn return_statement(chars: &[char], after: usize) -> Option<Statement> {
    let cut = comment_cut(chars, |seg| {
        let rest: String = seg.get(after..).unwrap_or_default().iter().collect();
        rest.trim().is_empty() || parser::parse_expression(&rest).is_ok()
    })?;
    let rest = chars.get(after..cut).unwrap_or_default();
    let mut text = "return".to_string();
    let value = trim(rest);
    if !value.is_empty() {
        if rest.first().is_some_and(|c| c.is_whitespace()) {
            text.push(' ');
            text.extend(value);
        } else {
            // `return(x)`, `return-1`: kept as written.
            text.extend(trim_end(rest));
        }
    }
    push_comment(&mut text, chars.get(cut..).unwrap_or_default());
    Some(Statement { effect: None, text })
}

/// Where the parser ends the code of this line (`parse_line_with_comments`):
/// the first of these cuts whose code `parses`: the whole line, then each
/// `//` outside strings from the last (eight of them), then the first.
/// `None` when none does.
fn comment_cut(chars: &[char], parses: impl Fn(&[char]) -> bool) -> Option<usize> {
    let candidates = comment_candidates(chars);
    let mut cuts = vec![chars.len()];
    cuts.extend(candidates.iter().rev().take(8));
    if let Some(&first) = candidates.first()
        && !cuts.contains(&first)
    {
        cuts.push(first);
    }
    cuts.into_iter().find(|&cut| parses(trim_end(chars.get(..cut).unwrap_or_default())))
}

/// Positions of `//` outside strings (the parser's `comment_candidates`).
fn comment_candidates(chars: &[char]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if matches!(c, '"' | '\'' | '`') && opens_string(chars, i) {
            match skip_string(chars, i) {
                Some(next) => {
                    i = next;
                    continue;
                }
                None => break,
            }
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            out.push(i);
            i += 2;
            continue;
        }
        i += 1;
    }
    out
}

/// The argument spans of a call whose `(` is just before `start`, and the
/// index of its `)`: the parser's own splitter (`split_call_arguments`): at
/// commas outside strings and brackets; an unmatched closer other than `)`
/// is text.
fn split_args(chars: &[char], start: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    avap_guest_vm::parser::split_call_arguments(chars, start)
}

/// A line that starts with the word `function`, as the parser's
/// `one_line_function` cuts it.
enum FunctionLine {
    /// `function f(a) {` with nothing after the `{` (at `open`).
    Header { open: usize },
    /// A body on the header's line: its statements (trimmed spans, none
    /// empty) and the closing `}`, if the body ends on this line.
    Body { open: usize, pieces: Vec<(usize, usize)>, close: Option<usize> },
}

/// `None` for every line that is not a function header the parser can
/// accept (not `function`, no `{`, text after the closing `}`).
fn function_line(body: &[char]) -> Option<FunctionLine> {
    let word: String = body.iter().take_while(|c| is_ident_char(**c)).collect();
    if word != "function" {
        return None;
    }
    // The header's `{`: the first one outside brackets.
    let mut depth = 0usize;
    let mut i = 0;
    let open = loop {
        let c = *body.get(i)?;
        match c {
            '"' | '\'' | '`' if opens_string(body, i) => {
                i = skip_string(body, i)?;
                continue;
            }
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '{' if depth == 0 => break i,
            _ => {}
        }
        i += 1;
    };
    // Nothing after the `{`, or only a comment: a header opening a block,
    // as the parser reads it (`function f(a) { // note`).
    let after = trim(body.get(open + 1..).unwrap_or_default());
    if after.is_empty() || after.starts_with(&['/', '/']) {
        return Some(FunctionLine::Header { open });
    }
    let mut pieces = Vec::new();
    let push = |from: usize, to: usize, pieces: &mut Vec<(usize, usize)>| {
        let text = body.get(from..to).unwrap_or_default();
        if let (Some(a), Some(b)) =
            (text.iter().position(|c| !c.is_whitespace()), text.iter().rposition(|c| !c.is_whitespace()))
        {
            pieces.push((from + a, from + b + 1));
        }
    };
    let (mut depth, mut start, mut i) = (0usize, open + 1, open + 1);
    while let Some(&c) = body.get(i) {
        match c {
            '"' | '\'' | '`' if opens_string(body, i) => match skip_string(body, i) {
                Some(next) => {
                    i = next;
                    continue;
                }
                // Unterminated: the parser stops looking for the `}` here.
                None => break,
            },
            '(' | '[' | '{' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '}' if depth > 0 => depth -= 1,
            '}' => {
                push(start, i, &mut pieces);
                let after = trim(body.get(i + 1..).unwrap_or_default());
                if !after.is_empty() && !after.starts_with(&['/', '/']) {
                    return None;
                }
                return Some(FunctionLine::Body { open, pieces, close: Some(i) });
            }
            ';' if depth == 0 => {
                push(start, i, &mut pieces);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(start, body.len(), &mut pieces);
    Some(FunctionLine::Body { open, pieces, close: None })
}

impl FunctionLine {
    fn render(&self, body: &[char]) -> (Vec<Effect>, String) {
        let open = match self {
            FunctionLine::Header { open } | FunctionLine::Body { open, .. } => *open,
        };
        let header = body.get(..open + 1).unwrap_or_default();
        let mut text = canonical_header(header).unwrap_or_else(|| trim(header).iter().collect());
        let mut effects = vec![Effect::Open(Frame::Function)];
        let FunctionLine::Body { pieces, close, .. } = self else {
            // A header keeps its trailing comment, as written.
            push_comment(&mut text, trim(body.get(open + 1..).unwrap_or_default()));
            return (effects, text);
        };
        let mut parts = Vec::with_capacity(pieces.len());
        for &(from, to) in pieces {
            let stmt = statement(body.get(from..to).unwrap_or_default());
            effects.extend(stmt.effect);
            parts.push(stmt.text);
        }
        if !parts.is_empty() {
            text.push(' ');
            text.push_str(&parts.join("; "));
        }
        if let Some(close) = close {
            text.push_str(if parts.is_empty() { "}" } else { " }" });
            push_comment(&mut text, trim(body.get(close + 1..).unwrap_or_default()));
            effects.push(Effect::CloseFunction);
        }
        (effects, text)
    }
}

/// `function name(a, b) {` from the header's tokens; `None` when they are
/// not exactly a header.
fn canonical_header(header: &[char]) -> Option<String> {
    let toks = tokenize(header, 1, 1).ok()?;
    let mut it = toks.iter().map(|t| &t.tok);
    let name = match (it.next(), it.next(), it.next()) {
        (Some(Tok::Ident(f)), Some(Tok::Ident(name)), Some(Tok::LParen)) if f == "function" => name,
        _ => return None,
    };
    let mut params: Vec<&str> = Vec::new();
    loop {
        match it.next()? {
            Tok::RParen if params.is_empty() => break,
            Tok::Ident(p) => {
                params.push(p);
                match it.next()? {
                    Tok::Comma => {}
                    Tok::RParen => break,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    if it.next()? != &Tok::LBrace || it.next().is_some() {
        return None;
    }
    Some(format!("function {name}({}) {{", params.join(", ")))
}

fn read_ident(chars: &[char], start: usize) -> (String, usize) {
    let mut i = start;
    if chars.get(i).is_some_and(|&c| is_ident_start(c)) {
        while chars.get(i).is_some_and(|&c| is_ident_char(c)) {
            i += 1;
        }
    }
    (chars.get(start..i).unwrap_or_default().iter().collect(), i)
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

fn trim_end(chars: &[char]) -> &[char] {
    let end = chars.iter().rposition(|c| !c.is_whitespace()).map_or(0, |e| e + 1);
    chars.get(..end).unwrap_or_default()
}

fn trim(chars: &[char]) -> &[char] {
    let chars = trim_end(chars);
    let start = chars.iter().position(|c| !c.is_whitespace()).unwrap_or(chars.len());
    chars.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `before` formats to `after` by the rules themselves (not by the
    /// fallback), `after` is a fixed point, and both parse alike.
    #[track_caller]
    fn check(before: &str, after: &str) {
        let got = format(before).unwrap_or_else(|d| panic!("{before:?} does not parse: {d:?}"));
        assert_eq!(got, after, "format({before:?})");
        assert_eq!(layout(before, Style::Canonical), after, "the rules alone, for {before:?}");
        assert_eq!(format(after).ok().as_deref(), Some(after), "format is not idempotent on {after:?}");
        let (a, b) = (parser::parse(before), parser::parse(after));
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(fingerprint(&a), fingerprint(&b), "{before:?} -> {after:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_are_kept_and_trimmed() {
        check("", "");
        check("   \n\t\n", "");
        check("addVar(a, 1)", "addVar(a, 1)\n");
        check("addVar(a, 1)\n\n\n", "addVar(a, 1)\n");
        check("\n\naddVar(a, 1)\n", "\n\naddVar(a, 1)\n");
        check("addVar(a, 1)   \n  \t \naddResult(a)\t\n", "addVar(a, 1)\n\naddResult(a)\n");
        check("addVar(a, 1)\r\n\r\naddResult(a)\r\n", "addVar(a, 1)\n\naddResult(a)\n");
        check("\t\taddVar(a, 1)\n    addResult(a)\n", "addVar(a, 1)\naddResult(a)\n");
    }

    #[test]
    fn comment_lines_are_kept_at_their_level() {
        check("  // top\n//x\n", "// top\n//x\n");
        check(
            "if(a, 1, =)\n// in the block\naddVar(b, 1)\n  // before end, still inside\nend()\n// after\n",
            "if(a, 1, =)\n    // in the block\n    addVar(b, 1)\n    // before end, still inside\nend()\n// after\n",
        );
    }

    #[test]
    fn blocks_are_indented() {
        check(
            "if(x, 3, >)\nif(x, 10, <)\naddVar(r, 1)\nelse()\naddVar(r, 2)\nend()\nend()\n",
            "if(x, 3, >)\n    if(x, 10, <)\n        addVar(r, 1)\n    else()\n        addVar(r, 2)\n    end()\nend()\n",
        );
        check(
            "startLoop(i, 1, 10)\n\n\t\ttotal = total + i\n   endLoop()\n",
            "startLoop(i, 1, 10)\n\n    total = total + i\nendLoop()\n",
        );
        check(
            "try()\nx = 1 / 0\ne2 = exception(err)\nend()\ntry()\nnosuch(1)\nexception()\naddVar(c, 1)\nend()\n",
            "try()\n    x = 1 / 0\ne2 = exception(err)\nend()\ntry()\n    nosuch(1)\nexception()\n    addVar(c, 1)\nend()\n",
        );
        // A handler without end() runs to the end of the file.
        check(
            "try()\nnosuch()\nexception(err)\naddVar(h, 1)\n",
            "try()\n    nosuch()\nexception(err)\n    addVar(h, 1)\n",
        );
    }

    #[test]
    fn functions_and_blocks_nested_in_them() {
        check(
            "function fact(n){\nif(n,1,<=)\nreturn 1\nend()\nstartLoop(i,1,2)\ntry()\nx = 1\nexception(e)\nend()\nendLoop()\nreturn n * fact(n - 1)\n}\nr = fact(10)\n",
            "function fact(n) {\n    if(n, 1, <=)\n        return 1\n    end()\n    startLoop(i, 1, 2)\n        try()\n            x = 1\n        exception(e)\n        end()\n    endLoop()\n    return n * fact(n - 1)\n}\nr = fact(10)\n",
        );
        // `}` closes a handler left open, as the parser reads it.
        check(
            "function f(a) {\ntry()\nnosuch()\nexception(e)\nx = 1\n}   // done\naddVar(y, 2)\n",
            "function f(a) {\n    try()\n        nosuch()\n    exception(e)\n        x = 1\n} // done\naddVar(y, 2)\n",
        );
        check("function f(a,b){\nreturn a\n}\n", "function f(a, b) {\n    return a\n}\n");
        check("  function   f ( a ,b )   {\n}\n", "function f(a, b) {\n}\n");
        check("function f(){\nreturn\n}\n", "function f() {\n    return\n}\n");
    }

    #[test]
    fn one_line_functions_open_no_block() {
        check("function f(a){ return a * 2 }\nx = f(2)\n", "function f(a) { return a * 2 }\nx = f(2)\n");
        check(
            "function bump(a){x=a+1;  return x}   // one line\naddVar(y,1)\n",
            "function bump(a) { x = a+1; return x } // one line\naddVar(y, 1)\n",
        );
        check("function f(a){}\n", "function f(a) {}\n");
        // A comment after the header's `{` opens a block and is kept as written.
        check(
            "function f(a){   // ends } here; x;y\nreturn a\n}\n",
            "function f(a) { // ends } here; x;y\n    return a\n}\n",
        );
        check("function f(a){ addVar(s,\"a;}\");return s }\n", "function f(a) { addVar(s, \"a;}\"); return s }\n");
        // A body that starts on the header's line and goes on below.
        check(
            "function g(a){ x = a * 3\nif(x,1,>)\nreturn x\nend()\n}\n",
            "function g(a) { x = a * 3\n    if(x, 1, >)\n        return x\n    end()\n}\n",
        );
        // A block opened and closed inside the one line.
        check(
            "function h(a){ if(a,1,=); return 1; end(); return 2 }\nx = h(1)\n",
            "function h(a) { if(a, 1, =); return 1; end(); return 2 }\nx = h(1)\n",
        );
    }

    #[test]
    fn call_arguments() {
        check("addVar (a,1)\n", "addVar(a, 1)\n");
        check("if ( a , \"b\" ,  = )\nend( )\n", "if(a, \"b\", =)\nend()\n");
        check("addVar(  s,\t\"a, b // c\"  )\n", "addVar(s, \"a, b // c\")\n");
        check("addVar(s,'it''s, x')\n", "addVar(s, 'it''s, x')\n");
        check(
            "addVar(s,[1,2 ,3])\naddVar(d,{\"k\":1,\"n\":(1,2)})\n",
            "addVar(s, [1,2 ,3])\naddVar(d, {\"k\":1,\"n\":(1,2)})\n",
        );
        check(
            "name = \"x\"\naddVar(t,`a ${name}, b ${ name }`)\n",
            "name = \"x\"\naddVar(t, `a ${name}, b ${ name }`)\n",
        );
        // Not a valid placeholder: a raw argument, kept whole.
        check("addVar(t,`${a, b}`)\n", "addVar(t, `${a, b}`)\n");
        check("replace(s,  \\d+ ,\"#\",r1)\n", "replace(s, \\d+, \"#\", r1)\n");
        check("getTimeStamp(\"1970-01-02\",%Y-%m-%d,0,t)\n", "getTimeStamp(\"1970-01-02\", %Y-%m-%d, 0, t)\n");
        check("getDateTime(\"%H\",0,Europe/Madrid,t)\n", "getDateTime(\"%H\", 0, Europe/Madrid, t)\n");
        check("randomString( [A-Z0-9] ,24,token)\n", "randomString([A-Z0-9], 24, token)\n");
        check("n = getListLen( xs )\nm=getListLen(xs,)\n", "n = getListLen(xs)\nm = getListLen(xs, )\n");
        check("frobnicate(1 ,x,  y + 1)\n", "frobnicate(1, x, y + 1)\n");
        check("frobnicate( )\n", "frobnicate()\n");
    }

    #[test]
    fn empty_arguments_stay_empty() {
        check("RequestGet(url,,,txt)\n", "RequestGet(url, , , txt)\n");
        check("addVar(a,   )\n", "addVar(a, )\n");
        check("frobnicate(,a,)\n", "frobnicate(, a, )\n");
    }

    #[test]
    fn trailing_comments_get_one_space() {
        check("addVar(a,1)// note\n", "addVar(a, 1) // note\n");
        check("addVar(a, 1)      //   note  \n", "addVar(a, 1) //   note\n");
        check("addVar(url, https://example.com/a)   // c\n", "addVar(url, https://example.com/a) // c\n");
        check("addVar(note, \"x // y\")   // z // w\n", "addVar(note, \"x // y\") // z // w\n");
        check("if(a,1,=)// c\nend()   // d\n", "if(a, 1, =) // c\nend() // d\n");
        check("x = \"a\"    // the note\n", "x = \"a\" // the note\n");
        check("function f(a) {\nreturn    a     // the value\n}\n", "function f(a) {\n    return a // the value\n}\n");
    }

    #[test]
    fn floor_division_is_not_a_comment() {
        check("x = a // 2\n", "x = a // 2\n");
        check("x=a//2\n", "x = a//2\n");
        check("half=7 // 2\n", "half = 7 // 2\n");
        check(
            "r = fact(10) // 3628800\nfunction fact(n){ return n }\n",
            "r = fact(10) // 3628800\nfunction fact(n) { return n }\n",
        );
        check("x = 7 //    two\n", "x = 7 //    two\n");
    }

    #[test]
    fn assignments() {
        check("x=1+2*3\n", "x = 1+2*3\n");
        check("x   =   [1,2]\n", "x = [1,2]\n");
        check("y=\"a=b\"\nz = y == \"a\"\n", "y = \"a=b\"\nz = y == \"a\"\n");
        check("end=5\nif=end\n", "end = 5\nif = end\n");
        check("s='q'\n", "s = 'q'\n");
        check("ñame=\"ü\"\n", "ñame = \"ü\"\n");
        // The value is one call: laid out as a call.
        check(
            "function f(a, b){ return a }\nx=f(1,\"a, b\")\ny = f (1 , 2)\n",
            "function f(a, b) { return a }\nx = f(1, \"a, b\")\ny = f(1, 2)\n",
        );
        // Nested calls and longer expressions are expression text.
        check("x = str(len([1,2]))  +  str(1,)\n", "x = str(len([1,2]))  +  str(1,)\n");
        check("x = str (1)[0]\n", "x = str (1)[0]\n");
    }

    #[test]
    fn return_spacing() {
        check("function f(a) {\nreturn(a)\n}\n", "function f(a) {\n    return(a)\n}\n");
        check("function f(a) {\nreturn\t-a\n}\n", "function f(a) {\n    return -a\n}\n");
        check("function f(a) {\nreturn // nothing\n}\n", "function f(a) {\n    return // nothing\n}\n");
    }

    #[test]
    fn unparsable_source_gives_its_diagnostics() {
        for source in
            ["addVar(a, 1)\nthis is not avap\n", "if(1, 1, =)\n", "x = (1 +\n", "{\n", "function f(a)\n{\n}\n"]
        {
            let Err(diags) = format(source) else { panic!("{source:?} formatted") };
            assert!(!diags.is_empty());
            assert_eq!(Err(diags), parser::parse(source).map(|_| ()), "{source:?}");
        }
    }

    #[test]
    fn where_the_lenient_and_strict_readings_differ() {
        // `not"a,b"`: one string for the expression, two pieces for the
        // argument splitter: the call is kept as written.
        check("x = str(not\"a,b\")\n", "x = str(not\"a,b\")\n");
        // A quote after a letter opens no string for the comment finder.
        check("function f(a) {\nreturn\"a // b\"\n}\n", "function f(a) {\n    return\"a // b\"\n}\n");
        // The `}` is in the piece's comment: the body goes on below.
        check(
            "function f(a){ addVar(x,1) // \"open }\nreturn a\n}\n",
            "function f(a) { addVar(x, 1) // \"open }\n    return a\n}\n",
        );
        check("function f(a){ addVar(q,1) // hi; return a }\n", "function f(a) { addVar(q, 1) // hi; return a }\n");
        check("addVar(x,1) // a; b }\n", "addVar(x, 1) // a; b }\n");
        check("function f(a){ return a }\nx = f(a) // 2\n", "function f(a) { return a }\nx = f(a) // 2\n");
        check("addVar(a,\u{3000}1\u{3000})\u{3000}\n", "addVar(a, 1)\n");
    }

    /// The case scripts, and variants of them with white space moved and
    /// tricky characters put in: wherever one parses, the rules alone keep
    /// its program and are a fixed point, so [`format`] never needs its
    /// fallback.
    #[test]
    fn the_rules_alone_keep_every_program() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases");
        let mut scripts = Vec::new();
        for group in ["language", "capability"] {
            for dir in avap_tests::case::folders(&root.join(group)).unwrap_or_default() {
                scripts.extend(std::fs::read_to_string(dir.join("script.avap")));
            }
        }
        assert!(scripts.len() > 50, "{} case scripts", scripts.len());
        let bits =
            ["//", "// x", ";", "\"", "'", "`", ",", " , ", "(", ")", "}", "{", "=", "\t", "ñ", "${a}", "; return 1"];
        let (mut tried, mut parsed) = (0, 0);
        for script in &scripts {
            let mut variants = vec![
                script.clone(),
                script.replace(", ", ",").replace(" = ", "="),
                script.replace(',', " ,\t").replace('(', " (  ").replace(')', " ) "),
                script.lines().map(|l| format!("\t {l}  \r\n")).collect(),
            ];
            for (n, line) in script.lines().enumerate() {
                let chars: Vec<char> = line.chars().collect();
                for (k, bit) in bits.iter().enumerate() {
                    let at = (n * 7 + k * 3) % (chars.len() + 1);
                    let mut edited: String = chars.get(..at).unwrap_or_default().iter().collect();
                    edited.push_str(bit);
                    edited.extend(chars.get(at..).unwrap_or_default());
                    let mut lines: Vec<&str> = script.lines().collect();
                    if let Some(l) = lines.get_mut(n) {
                        *l = &edited;
                    }
                    variants.push(lines.join("\n"));
                }
            }
            for variant in variants {
                tried += 1;
                let Ok(program) = parser::parse(&variant) else { continue };
                parsed += 1;
                let canonical = layout(&variant, Style::Canonical);
                assert!(keeps_program(&canonical, &program), "another program:\n{variant}\n---\n{canonical}");
                assert_eq!(layout(&canonical, Style::Canonical), canonical, "not a fixed point:\n{variant}");
            }
        }
        assert!(parsed > tried / 10, "{parsed} of {tried} variants parse");
    }

    #[test]
    fn the_fallback_only_reindents() {
        let source = "  if(a,1,=)   \r\n addVar(b,1)\n end()\n\n";
        assert_eq!(layout(source, Style::Indentation), "if(a,1,=)\n    addVar(b,1)\nend()\n");
    }
}
