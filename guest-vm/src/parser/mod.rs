//! Parser: script text -> [`Program`].
//!
//! Scripts are line-oriented. Each line is parsed on its own into a
//! `LineStmt` (phase 1: statements here, calls and their arguments in
//! `call.rs`, expressions in `expr.rs`); `block.rs` then matches openers and
//! closers and hoists functions (phase 2). Errors never stop the parse: every
//! problem is collected with its line and column, and the script is rejected
//! as a whole if there is any.
//!
//! Command arguments are split leniently (an argument that is not an
//! expression, such as `=` or `%Y-%m-%d`, is kept as raw text); everything
//! else is tokenized strictly by [`crate::tokenizer`].
//!
//! `//` is both the comment marker and the floor-division operator. A line
//! is first parsed whole; if that fails, it is retried with the comment cut
//! at each `//` (outside strings), from the last to the first. So
//! `x = a // 2` divides and `addVar(a, 1) // note` has a comment.

mod block;
mod call;
mod expr;

use self::call::parse_call;
use self::expr::expr_from_chars;
use crate::ast::{CmdArg, Expr, Program, ValueArg};
use crate::builtins::{self, Builtin};
use crate::error::Diagnostic;
use crate::tokenizer::{Tok, Token, is_ident_char, is_ident_start, opens_string, skip_string, tokenize};

/// Names that cannot be assigned or used as function or parameter names.
pub const KEYWORDS: &[&str] =
    &["and", "or", "not", "True", "False", "None", "true", "false", "null", "function", "return", "while"];

/// The comparators of `if()`.
pub const COMPARATORS: &[&str] = &["=", "==", "!=", "<", ">", "<=", ">="];

/// Parses a whole script, or returns every syntax problem found.
pub fn parse(script: &str) -> Result<Program, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut lines = Vec::new();
    for (idx, raw) in script.split('\n').enumerate() {
        let line = idx + 1;
        let chars: Vec<char> = raw.chars().collect();
        let Some(start) = chars.iter().position(|c| !c.is_whitespace()) else {
            continue;
        };
        let end = chars.iter().rposition(|c| !c.is_whitespace()).map_or(start, |e| e + 1);
        let body = chars.get(start..end).unwrap_or_default();
        if body.starts_with(&['/', '/']) {
            continue;
        }
        // `function f(a){ return a * 2 }`: the header, each statement of the
        // body (separated by `;`) and the closing brace, as if on lines of
        // their own.
        let segments = one_line_function(body).unwrap_or_else(|| vec![(0, body.len())]);
        for (from, to) in segments {
            let Some(seg) = body.get(from..to) else { continue };
            match parse_line_with_comments(seg, line, start + from + 1) {
                Ok(stmt) => lines.push((line, start + from + 1, stmt)),
                Err(mut d) => diags.append(&mut d),
            }
        }
    }
    block::build(lines, diags)
}

/// Splits the arguments of a call whose `(` is just before `start`, as the
/// parser does (at commas outside strings and brackets; a closer that does
/// not match is text): the argument spans and the index of the closing
/// `)`, or `None` when the call is not closed or a string not ended. Used
/// by tools that lay out calls (`avap fmt`), so they split exactly alike.
pub fn split_call_arguments(chars: &[char], start: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    call::split_args(chars, start, 1, 1).ok()
}

/// Parses one expression (used by tests and tools).
pub fn parse_expression(text: &str) -> Result<Expr, Diagnostic> {
    let chars: Vec<char> = text.chars().collect();
    expr_from_chars(&chars, 1, 1)
}

/// One line, before blocks are matched.
#[derive(Debug)]
enum LineStmt {
    FunctionDef { name: String, params: Vec<String> },
    CloseBrace,
    Return(Option<Expr>),
    Assign { name: String, value: Expr },
    Command { builtin: Builtin, args: Vec<CmdArg> },
    Call { name: String, args: Vec<RawArg> },
    If { left: ValueArg, right: ValueArg, comparator: ValueArg },
    Else,
    End,
    StartLoop { var: String, from: ValueArg, to: ValueArg },
    While { cond: Expr },
    EndLoop,
    Try,
    Exception { err_var: Option<String>, target: Option<String> },
}

/// A command-call argument as written.
#[derive(Debug, Clone)]
struct RawArg {
    col: usize,
    kind: RawKind,
    /// The argument as written (trimmed); pattern parameters keep it.
    text: String,
}

#[derive(Debug, Clone)]
enum RawKind {
    Empty,
    Word(String),
    Expr(Expr),
    /// Not an expression: the text, and why it is not one.
    Raw(String, Diagnostic),
}

type LineResult = Result<LineStmt, Vec<Diagnostic>>;

fn one(line: usize, col: usize, msg: impl Into<String>) -> Vec<Diagnostic> {
    vec![Diagnostic::new(line, col, msg)]
}

/// The pieces of a function header that has its body on the same line
/// (`function f(a){ x = a + 1; return x }`): the header up to its `{`, each
/// statement between `;`s, and the closing `}`, as `(from, to)` ranges of
/// `body` (trimmed, none empty). `None` for every other line, including a
/// header with nothing after its `{`. Strings and brackets inside the body
/// are skipped, so `{`, `}` and `;` in them do not count; after the closing
/// `}` only a `//` comment may follow.
fn one_line_function(body: &[char]) -> Option<Vec<(usize, usize)>> {
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
    // Nothing after the `{`, or only a comment (`function f(a) { // note`):
    // a header opening a block, not a one-line function.
    let rest: Vec<char> = body[open + 1..].iter().copied().skip_while(|c| c.is_whitespace()).collect();
    if rest.is_empty() || rest.starts_with(&['/', '/']) {
        return None;
    }
    let mut pieces = vec![(0, open + 1)];
    let push = |from: usize, to: usize, pieces: &mut Vec<(usize, usize)>| {
        let text = &body[from..to];
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
                // An unterminated string: let the statement's own parse say so.
                None => break,
            },
            '(' | '[' | '{' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '}' if depth > 0 => depth -= 1,
            '}' => {
                push(start, i, &mut pieces);
                pieces.push((i, i + 1));
                let after: String = body[i + 1..].iter().collect();
                let after = after.trim();
                if !after.is_empty() && !after.starts_with("//") {
                    // Something after the closing brace: one more piece, for
                    // its own error.
                    push(i + 1, body.len(), &mut pieces);
                }
                return Some(pieces);
            }
            ';' if depth == 0 => {
                push(start, i, &mut pieces);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    // No closing brace on this line: the body goes on below.
    push(start, body.len(), &mut pieces);
    Some(pieces)
}

/// Positions of `//` outside strings.
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

fn trim_end(chars: &[char]) -> &[char] {
    let end = chars.iter().rposition(|c| !c.is_whitespace()).map_or(0, |e| e + 1);
    chars.get(..end).unwrap_or_default()
}

fn parse_line_with_comments(body: &[char], line: usize, col: usize) -> LineResult {
    let candidates = comment_candidates(body);
    // Cut positions to try: the whole line, then each `//` from the last
    // (bounded, so a line full of `//` stays cheap), then the first.
    let mut cuts = vec![body.len()];
    cuts.extend(candidates.iter().rev().take(8));
    if let Some(&first) = candidates.first()
        && !cuts.contains(&first)
    {
        cuts.push(first);
    }
    let report_cut = candidates.first().copied().unwrap_or(body.len());
    let mut report = None;
    for cut in cuts {
        let seg = trim_end(body.get(..cut).unwrap_or_default());
        match parse_line(seg, line, col) {
            Ok(stmt) => return Ok(stmt),
            Err(d) if cut == report_cut => report = Some(d),
            Err(_) => {}
        }
    }
    Err(report.unwrap_or_else(|| one(line, col, "invalid statement")))
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

/// Parses one statement line (already trimmed, comment removed).
fn parse_line(seg: &[char], line: usize, col: usize) -> LineResult {
    if seg.is_empty() {
        return Err(one(line, col, "empty statement"));
    }
    if seg == ['}'] {
        return Ok(LineStmt::CloseBrace);
    }
    let (word, after) = read_ident(seg, 0);
    if word.is_empty() {
        let c = seg.first().copied().unwrap_or(' ');
        return Err(one(
            line,
            col,
            format!("expected a statement (a command call, an assignment, a function or return), found '{c}'"),
        ));
    }
    let boundary = seg.get(after).is_none_or(|c| !is_ident_char(*c));
    if word == "function" && boundary {
        return parse_function_def(seg, line, col);
    }
    if word == "return" && boundary {
        let rest = seg.get(after..).unwrap_or_default();
        let start = skip_ws(rest, 0);
        if start >= rest.len() {
            return Ok(LineStmt::Return(None));
        }
        let expr =
            expr_from_chars(rest.get(start..).unwrap_or_default(), line, col + after + start).map_err(|d| vec![d])?;
        return Ok(LineStmt::Return(Some(expr)));
    }
    let j = skip_ws(seg, after);
    if word == "while" && seg.get(j) == Some(&'(') {
        return parse_while(seg, j, line, col);
    }
    match seg.get(j) {
        Some('(') => parse_call(&word, col, seg, j + 1, line, col, None),
        Some('=') if seg.get(j + 1) != Some(&'=') => {
            if KEYWORDS.contains(&word.as_str()) {
                return Err(one(line, col, format!("cannot assign to '{word}'")));
            }
            let k = skip_ws(seg, j + 1);
            if k >= seg.len() {
                return Err(one(line, col + j, format!("missing value after '{word} ='")));
            }
            let (callee, after_callee) = read_ident(seg, k);
            if Builtin::from_name(&callee).is_some() {
                let m = skip_ws(seg, after_callee);
                if seg.get(m) == Some(&'(') {
                    return parse_call(&callee, col + k, seg, m + 1, line, col, Some(word));
                }
            }
            let value = expr_from_chars(seg.get(k..).unwrap_or_default(), line, col + k).map_err(|d| vec![d])?;
            Ok(LineStmt::Assign { name: word, value })
        }
        Some(c) => Err(one(line, col + j, format!("expected '(' or '=' after '{word}', found '{c}'"))),
        None => {
            Err(one(line, col + j, format!("'{word}' alone is not a statement (expected a call or an assignment)")))
        }
    }
}

/// `while(condition)`: one expression between the parentheses, which
/// close the line.
fn parse_while(seg: &[char], open: usize, line: usize, col: usize) -> LineResult {
    let (ranges, close) = call::split_args(seg, open + 1, line, col).map_err(|d| vec![d])?;
    if let Some(extra) = seg.get(close + 1..).and_then(|rest| rest.iter().position(|c| !c.is_whitespace())) {
        return Err(one(line, col + close + 1 + extra, "unexpected text after while(...)"));
    }
    let [(from, to)] = ranges.as_slice() else {
        return Err(one(line, col + open, "while() takes one condition, e.g. while(x < 10)"));
    };
    let text = seg.get(*from..*to).unwrap_or_default();
    if text.iter().all(|c| c.is_whitespace()) {
        return Err(one(line, col + open, "while() takes one condition, e.g. while(x < 10)"));
    }
    let cond = expr_from_chars(text, line, col + from).map_err(|d| vec![d])?;
    Ok(LineStmt::While { cond })
}

/// `function name(a, b) {`
fn parse_function_def(seg: &[char], line: usize, col: usize) -> LineResult {
    let toks = tokenize(seg, line, col).map_err(|d| vec![d])?;
    let end_col = col + seg.len();
    let mut it = toks.iter();
    it.next(); // `function`
    let tok_col = |t: Option<&Token>| t.map_or(end_col, |t| t.col);
    let name = match it.next() {
        Some(Token { tok: Tok::Ident(n), .. }) => n.clone(),
        other => {
            return Err(one(line, tok_col(other), "expected a function name after 'function'"));
        }
    };
    let name_col = col + 9;
    if KEYWORDS.contains(&name.as_str()) {
        return Err(one(line, name_col, format!("'{name}' is a keyword, not a function name")));
    }
    if Builtin::from_name(&name).is_some() {
        return Err(one(line, name_col, format!("function '{name}' would hide the command of the same name")));
    }
    if builtins::FUNCTIONS.contains(&name.as_str()) {
        return Err(one(line, name_col, format!("function '{name}' would hide the built-in of the same name")));
    }
    match it.next() {
        Some(Token { tok: Tok::LParen, .. }) => {}
        other => {
            return Err(one(line, tok_col(other), "expected '(' after the function name"));
        }
    }
    let mut params: Vec<String> = Vec::new();
    loop {
        match it.next() {
            Some(Token { tok: Tok::RParen, .. }) if params.is_empty() => break,
            Some(Token { tok: Tok::Ident(p), col: pcol }) => {
                if KEYWORDS.contains(&p.as_str()) {
                    return Err(one(line, *pcol, format!("'{p}' is a keyword, not a parameter name")));
                }
                if params.contains(p) {
                    return Err(one(line, *pcol, format!("duplicate parameter '{p}'")));
                }
                params.push(p.clone());
                match it.next() {
                    Some(Token { tok: Tok::Comma, .. }) => {}
                    Some(Token { tok: Tok::RParen, .. }) => break,
                    other => {
                        return Err(one(line, tok_col(other), "expected ',' or ')' in the parameter list"));
                    }
                }
            }
            other => return Err(one(line, tok_col(other), "expected a parameter name")),
        }
    }
    match it.next() {
        Some(Token { tok: Tok::LBrace, .. }) => {}
        other => {
            return Err(one(line, tok_col(other), "expected '{' at the end of the function header"));
        }
    }
    if let Some(extra) = it.next() {
        return Err(one(line, extra.col, format!("unexpected {} after '{{'", extra.tok.describe())));
    }
    Ok(LineStmt::FunctionDef { name, params })
}
