//! Parser: script text -> [`Program`].
//!
//! Scripts are line-oriented. Each line is parsed on its own into a
//! [`LineStmt`] (phase 1); the block builder then matches openers and
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

use std::collections::{HashMap, HashSet};

use crate::ast::{BinOp, Block, CmdArg, CmpOp, Expr, Function, Program, Stmt, StmtKind, ValueArg};
use crate::builtins::{self, Builtin, Group, Kind};
use crate::error::Diagnostic;
use crate::limits::{MAX_BLOCK_DEPTH, MAX_EXPR_DEPTH};
use crate::tokenizer::{Tok, Token, is_ident_char, is_ident_start, is_identifier, opens_string, skip_string, tokenize};

/// Names that cannot be assigned or used as function or parameter names.
pub const KEYWORDS: &[&str] =
    &["and", "or", "not", "True", "False", "None", "true", "false", "null", "function", "return"];

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
    let function_names: HashSet<String> = lines
        .iter()
        .filter_map(|(_, _, s)| match s {
            LineStmt::FunctionDef { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut b = Builder { main: Vec::new(), stack: Vec::new(), functions: HashMap::new(), diags, function_names };
    for (line, col, stmt) in lines {
        b.add(line, col, stmt);
    }
    b.finish();
    if b.diags.is_empty() {
        Ok(Program { main: b.main, functions: b.functions })
    } else {
        b.diags.sort_by_key(|d| (d.line, d.column));
        Err(b.diags)
    }
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
    if body[open + 1..].iter().all(|c| c.is_whitespace()) {
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

/// Splits the arguments of a call whose `(` is just before `start`.
/// Returns the argument spans and the index of the closing `)`.
fn split_args(seg: &[char], start: usize, line: usize, col: usize) -> Result<(Vec<(usize, usize)>, usize), Diagnostic> {
    let mut spans = Vec::new();
    let mut arg_start = start;
    let mut stack: Vec<char> = Vec::new();
    let mut i = start;
    while let Some(&c) = seg.get(i) {
        match c {
            '"' | '\'' | '`' if opens_string(seg, i) => match skip_string(seg, i) {
                Some(next) => {
                    i = next;
                    continue;
                }
                None => {
                    return Err(Diagnostic::new(line, col + i, "unterminated string"));
                }
            },
            '(' => stack.push(')'),
            '[' => stack.push(']'),
            '{' => stack.push('}'),
            ')' | ']' | '}' => {
                if stack.last() == Some(&c) {
                    stack.pop();
                } else if stack.is_empty() && c == ')' {
                    spans.push((arg_start, i));
                    return Ok((spans, i));
                }
                // Any other closer is plain text (lenient arguments).
            }
            ',' if stack.is_empty() => {
                spans.push((arg_start, i));
                arg_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err(Diagnostic::new(line, col + start.saturating_sub(1), "missing ')' to close this call"))
}

fn classify(chars: &[char], line: usize, col: usize) -> RawArg {
    let Some(s) = chars.iter().position(|c| !c.is_whitespace()) else {
        return RawArg { col, kind: RawKind::Empty, text: String::new() };
    };
    let text = trim_end(chars.get(s..).unwrap_or_default());
    let acol = col + s;
    let written: String = text.iter().collect();
    let kind = match tokenize(text, line, acol) {
        Err(d) => RawKind::Raw(text.iter().collect(), d),
        Ok(toks) => {
            if let [Token { tok: Tok::Ident(name), .. }] = toks.as_slice()
                && !KEYWORDS.contains(&name.as_str())
            {
                return RawArg { col: acol, kind: RawKind::Word(name.clone()), text: written };
            }
            match parse_tokens(&toks, line, acol + text.len()) {
                Ok(e) => RawKind::Expr(e),
                Err(d) => RawKind::Raw(text.iter().collect(), d),
            }
        }
    };
    RawArg { col: acol, kind, text: written }
}

/// `name(args)` or, with `target`, `target = name(args)` where `name` is a command.
fn parse_call(
    name: &str,
    name_col: usize,
    seg: &[char],
    open: usize,
    line: usize,
    col: usize,
    target: Option<String>,
) -> LineResult {
    let (spans, close) = split_args(seg, open, line, col).map_err(|d| vec![d])?;
    let trailing = skip_ws(seg, close + 1);
    if trailing < seg.len() {
        return Err(one(line, col + trailing, "unexpected text after ')'"));
    }
    let mut args: Vec<RawArg> =
        spans.iter().map(|&(s, e)| classify(seg.get(s..e).unwrap_or_default(), line, col + s)).collect();
    if args.len() == 1 && matches!(args.first().map(|a| &a.kind), Some(RawKind::Empty)) {
        args.clear();
    }
    match Builtin::from_name(name) {
        Some(builtin) => build_command(builtin, args, target, line, name_col, col + open),
        None => Ok(LineStmt::Call { name: name.to_string(), args }),
    }
}

fn name_of(arg: &RawArg) -> Option<String> {
    match &arg.kind {
        RawKind::Word(w) => Some(w.clone()),
        RawKind::Expr(Expr::Str(s)) if is_identifier(s) && !KEYWORDS.contains(&&**s) => Some(s.to_string()),
        _ => None,
    }
}

/// Parameters that hold a regular expression, a character class or a time
/// zone name: written bare, they are text, not expressions.
const PATTERN_PARAMS: [&str; 3] = ["Pattern", "rePattern", "TimeZone"];

/// A pattern argument: a string literal (or template) is its value, a bare
/// word is the variable if it exists else the word, and anything else is the
/// text as written (`[A-Za-z0-9]` would otherwise be a list expression and
/// `Europe/Madrid` a division).
fn pattern_arg(arg: RawArg) -> ValueArg {
    match arg.kind {
        RawKind::Expr(e @ (Expr::Str(_) | Expr::Template(_))) => ValueArg::Expr(e),
        RawKind::Expr(_) => ValueArg::Raw(arg.text),
        _ => value_arg(arg),
    }
}

fn value_arg(arg: RawArg) -> ValueArg {
    match arg.kind {
        RawKind::Empty => ValueArg::Empty,
        RawKind::Word(w) => ValueArg::Word(w),
        RawKind::Expr(e) => ValueArg::Expr(e),
        RawKind::Raw(t, _) => ValueArg::Raw(t),
    }
}

fn build_command(
    builtin: Builtin,
    mut args: Vec<RawArg>,
    target: Option<String>,
    line: usize,
    name_col: usize,
    args_col: usize,
) -> LineResult {
    let spec = builtin.spec();
    let cname = spec.name;
    if builtin == Builtin::Exception {
        if args.len() > 1 {
            return Err(one(line, name_col, format!("exception expects 0 or 1 arguments (error), got {}", args.len())));
        }
        let err_var = match args.pop() {
            None => None,
            Some(RawArg { kind: RawKind::Empty, .. }) => None,
            Some(a) => Some(
                name_of(&a).ok_or_else(|| one(line, a.col, "the argument of exception() must be a variable name"))?,
            ),
        };
        return Ok(LineStmt::Exception { err_var, target });
    }
    if let Some(t) = &target {
        let tpos = match spec.target_index() {
            Some(p) if spec.group != Group::Control => p,
            _ => {
                return Err(one(
                    line,
                    name_col,
                    format!(
                        "{cname} has no result to store: write `{cname}(...)` on its own line, not `{t} = {cname}(...)`"
                    ),
                ));
            }
        };
        if args.len() + 1 == spec.params.len() {
            args.insert(tpos, RawArg { col: name_col, kind: RawKind::Word(t.clone()), text: t.clone() });
        } else if args.len() == spec.params.len()
            && let Some(slot) = args.get_mut(tpos)
        {
            match (&slot.kind, name_of(slot)) {
                (RawKind::Empty, _) => slot.kind = RawKind::Word(t.clone()),
                (_, Some(n)) if &n == t => {}
                _ => {
                    return Err(one(
                        line,
                        slot.col,
                        format!(
                            "the target of {cname} is given twice: '{t}' before '=' and again as argument '{}'",
                            spec.params.get(tpos).map_or("", |p| p.name)
                        ),
                    ));
                }
            }
        }
    }
    if args.len() != spec.params.len() {
        return Err(one(line, name_col, spec.arity_message(args.len())));
    }
    if builtin == Builtin::If {
        let mut it = args.into_iter().map(value_arg);
        let (Some(left), Some(right), Some(comparator)) = (it.next(), it.next(), it.next()) else {
            return Err(one(line, name_col, spec.arity_message(0)));
        };
        let literal = match &comparator {
            ValueArg::Raw(t) => Some(t.clone()),
            ValueArg::Expr(Expr::Str(s)) => Some(s.to_string()),
            ValueArg::Empty => Some(String::new()),
            _ => None,
        };
        if let Some(op) = literal
            && !COMPARATORS.contains(&op.trim())
        {
            return Err(one(line, args_col, format!("unknown comparator '{op}' (use =, ==, !=, <, >, <=, >=)")));
        }
        return Ok(LineStmt::If { left, right, comparator });
    }
    let mut out = Vec::with_capacity(args.len());
    for (param, arg) in spec.params.iter().zip(args) {
        out.push(match param.kind {
            Kind::Target | Kind::Source => {
                let Some(n) = name_of(&arg) else {
                    let what =
                        if matches!(arg.kind, RawKind::Empty) { "is missing" } else { "must be a variable name" };
                    return Err(one(line, arg.col, format!("argument '{}' of {cname} {what}", param.name)));
                };
                if param.kind == Kind::Target { CmdArg::Target(n) } else { CmdArg::Source(n) }
            }
            Kind::Value if PATTERN_PARAMS.contains(&param.name) => CmdArg::Value(pattern_arg(arg)),
            Kind::Value => CmdArg::Value(value_arg(arg)),
        });
    }
    match builtin {
        Builtin::Else => Ok(LineStmt::Else),
        Builtin::End => Ok(LineStmt::End),
        Builtin::EndLoop => Ok(LineStmt::EndLoop),
        Builtin::Try => Ok(LineStmt::Try),
        Builtin::StartLoop => {
            let mut it = out.into_iter();
            match (it.next(), it.next(), it.next()) {
                (Some(CmdArg::Target(var)), Some(CmdArg::Value(from)), Some(CmdArg::Value(to))) => {
                    Ok(LineStmt::StartLoop { var, from, to })
                }
                _ => Err(one(line, name_col, spec.arity_message(0))),
            }
        }
        _ => Ok(LineStmt::Command { builtin, args: out }),
    }
}

/// An open block while building.
enum Frame {
    If {
        line: usize,
        left: ValueArg,
        right: ValueArg,
        comparator: ValueArg,
        then_block: Block,
        else_block: Option<Block>,
    },
    Loop {
        line: usize,
        var: String,
        from: ValueArg,
        to: ValueArg,
        body: Block,
    },
    Try {
        line: usize,
        body: Block,
        handler: Option<(Option<String>, Option<String>, Block)>,
    },
    Function {
        line: usize,
        name: String,
        params: Vec<String>,
        body: Block,
        valid: bool,
    },
}

impl Frame {
    fn block(&mut self) -> &mut Block {
        match self {
            Frame::If { then_block, else_block, .. } => else_block.as_mut().unwrap_or(then_block),
            Frame::Loop { body, .. } => body,
            Frame::Try { body, handler, .. } => match handler {
                Some((_, _, h)) => h,
                None => body,
            },
            Frame::Function { body, .. } => body,
        }
    }

    fn describe(&self) -> String {
        match self {
            Frame::If { line, .. } => format!("if() at line {line} is not closed with end()"),
            Frame::Loop { line, .. } => {
                format!("startLoop() at line {line} is not closed with endLoop()")
            }
            Frame::Try { line, handler: None, .. } => format!("try() at line {line} has no exception() handler"),
            Frame::Try { line, .. } => format!("try() at line {line} is not closed with end()"),
            Frame::Function { line, name, .. } => {
                format!("function '{name}' at line {line} is not closed with '}}'")
            }
        }
    }
}

struct Builder {
    main: Block,
    stack: Vec<Frame>,
    functions: HashMap<String, Function>,
    diags: Vec<Diagnostic>,
    function_names: HashSet<String>,
}

impl Builder {
    fn current(&mut self) -> &mut Block {
        match self.stack.last_mut() {
            Some(f) => f.block(),
            None => &mut self.main,
        }
    }

    fn push(&mut self, line: usize, kind: StmtKind) {
        self.current().push(Stmt { line, kind });
    }

    fn err(&mut self, line: usize, col: usize, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(line, col, msg));
    }

    fn in_function(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Function { .. }))
    }

    fn open(&mut self, line: usize, col: usize, frame: Frame) {
        let depth = self.stack.iter().filter(|f| !matches!(f, Frame::Function { .. })).count();
        if depth >= MAX_BLOCK_DEPTH {
            self.err(line, col, format!("blocks are nested too deeply (limit {MAX_BLOCK_DEPTH})"));
        }
        self.stack.push(frame);
    }

    /// Pops the top frame and attaches the finished statement to its parent.
    fn close_top(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame {
            Frame::If { line, left, right, comparator, then_block, else_block } => self.push(
                line,
                StmtKind::If { left, right, comparator, then_block, else_block: else_block.unwrap_or_default() },
            ),
            Frame::Loop { line, var, from, to, body } => self.push(line, StmtKind::Loop { var, from, to, body }),
            Frame::Try { line, body, handler } => {
                let (err_var, target, handler) = handler.unwrap_or_default();
                self.push(line, StmtKind::Try { body, err_var, target, handler });
            }
            Frame::Function { line, name, params, body, valid } => {
                if !valid {
                    return;
                }
                if self.functions.contains_key(&name) {
                    self.err(line, 1, format!("function '{name}' is defined twice"));
                    return;
                }
                self.functions.insert(name.clone(), Function { name, params, body, line });
            }
        }
    }

    fn add(&mut self, line: usize, col: usize, stmt: LineStmt) {
        match stmt {
            LineStmt::FunctionDef { name, params } => {
                let valid = self.stack.is_empty();
                if !valid {
                    self.err(
                        line,
                        col,
                        "functions can only be defined at the top level (not inside a block or another function)",
                    );
                }
                self.stack.push(Frame::Function { line, name, params, body: Vec::new(), valid });
            }
            LineStmt::CloseBrace => {
                if !self.in_function() {
                    self.err(line, col, "'}' without an open function");
                    return;
                }
                while let Some(top) = self.stack.last() {
                    match top {
                        Frame::Function { .. } => {
                            self.close_top();
                            break;
                        }
                        Frame::Try { handler: Some(_), .. } => self.close_top(),
                        other => {
                            let msg = format!("{} before the '}}' that ends the function", other.describe());
                            self.err(line, col, msg);
                            self.close_top();
                        }
                    }
                }
            }
            LineStmt::Return(e) => {
                if self.in_function() {
                    self.push(line, StmtKind::Return(e));
                } else {
                    self.err(line, col, "'return' is only allowed inside a function");
                }
            }
            LineStmt::Assign { name, value } => self.push(line, StmtKind::Assign { name, value }),
            LineStmt::Command { builtin, args } => self.push(line, StmtKind::Command { builtin, args }),
            LineStmt::Call { name, args } => {
                if self.function_names.contains(&name) {
                    let mut exprs = Vec::with_capacity(args.len());
                    for a in args {
                        match a.kind {
                            RawKind::Word(w) => exprs.push(Expr::Name(w)),
                            RawKind::Expr(e) => exprs.push(e),
                            RawKind::Empty => {
                                self.err(line, a.col, format!("empty argument in the call of '{name}'"));
                                return;
                            }
                            RawKind::Raw(_, d) => {
                                self.diags.push(d);
                                return;
                            }
                        }
                    }
                    self.push(line, StmtKind::CallFunction { name, args: exprs });
                } else {
                    let args = args.into_iter().map(value_arg).collect();
                    self.push(line, StmtKind::External { name, args });
                }
            }
            LineStmt::If { left, right, comparator } => self.open(
                line,
                col,
                Frame::If { line, left, right, comparator, then_block: Vec::new(), else_block: None },
            ),
            LineStmt::Else => match self.stack.last_mut() {
                Some(Frame::If { else_block: else_block @ None, .. }) => *else_block = Some(Vec::new()),
                Some(Frame::If { line: l, .. }) => {
                    let msg = format!("second else() for the if() at line {l}");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "else() without a matching if()"),
            },
            LineStmt::End => match self.stack.last() {
                Some(Frame::If { .. }) | Some(Frame::Try { handler: Some(_), .. }) => self.close_top(),
                Some(Frame::Try { line: l, .. }) => {
                    let msg = format!("end() closes the try() at line {l}, which has no exception() handler");
                    self.err(line, col, msg);
                    self.stack.pop();
                }
                Some(Frame::Loop { line: l, .. }) => {
                    let msg = format!("end() cannot close the startLoop() at line {l}; use endLoop()");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "end() without a matching if() or try()"),
            },
            LineStmt::StartLoop { var, from, to } => {
                self.open(line, col, Frame::Loop { line, var, from, to, body: Vec::new() })
            }
            LineStmt::EndLoop => match self.stack.last() {
                Some(Frame::Loop { .. }) => self.close_top(),
                Some(Frame::If { line: l, .. }) => {
                    let msg = format!("endLoop() cannot close the if() at line {l}; use end()");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "endLoop() without a matching startLoop()"),
            },
            LineStmt::Try => self.open(line, col, Frame::Try { line, body: Vec::new(), handler: None }),
            LineStmt::Exception { err_var, target } => match self.stack.last_mut() {
                Some(Frame::Try { handler: handler @ None, .. }) => *handler = Some((err_var, target, Vec::new())),
                _ => self.err(line, col, "exception() without a matching try()"),
            },
        }
    }

    fn finish(&mut self) {
        while let Some(top) = self.stack.last() {
            if let Frame::Try { handler: Some(_), .. } = top {
                // A handler may run to the end of the script without end().
                self.close_top();
                continue;
            }
            let line = match top {
                Frame::If { line, .. }
                | Frame::Loop { line, .. }
                | Frame::Try { line, .. }
                | Frame::Function { line, .. } => *line,
            };
            let msg = top.describe();
            self.err(line, 1, msg);
            self.stack.pop();
        }
    }
}

// ---------------------------------------------------------------------------
// Expressions: precedence climbing over the token list, Python precedence.
//   or < and < not < comparisons < + - < * / // % < unary -/+ < ** < [] ()

fn expr_from_chars(chars: &[char], line: usize, col: usize) -> Result<Expr, Diagnostic> {
    let toks = tokenize(chars, line, col)?;
    parse_tokens(&toks, line, col + chars.len())
}

/// Parses a complete expression from tokens; `end_col` is the column just
/// after the text (for "unexpected end" errors).
fn parse_tokens(toks: &[Token], line: usize, end_col: usize) -> Result<Expr, Diagnostic> {
    let mut p = ExprParser { toks, pos: 0, depth: 0, line, end_col };
    let e = p.expr()?;
    if let Some(t) = p.peek_token() {
        return Err(p.error_at(t.col, format!("unexpected {}", t.tok.describe())));
    }
    Ok(e)
}

struct ExprParser<'a> {
    toks: &'a [Token],
    pos: usize,
    depth: usize,
    line: usize,
    end_col: usize,
}

impl ExprParser<'_> {
    fn peek_token(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn col(&self) -> usize {
        self.peek_token().map_or(self.end_col, |t| t.col)
    }
    fn error_at(&self, col: usize, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, col, msg)
    }
    fn error_here(&self, what: &str) -> Diagnostic {
        match self.peek_token() {
            Some(t) => self.error_at(t.col, format!("expected {what}, found {}", t.tok.describe())),
            None => self.error_at(self.end_col, format!("expected {what}, found the end of the expression")),
        }
    }
    fn bump(&mut self) {
        self.pos += 1;
    }
    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), Diagnostic> {
        if self.eat(tok) { Ok(()) } else { Err(self.error_here(what)) }
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == w)
    }

    fn enter(&mut self) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            return Err(self.error_at(self.col(), format!("expression is nested too deeply (limit {MAX_EXPR_DEPTH})")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, Diagnostic> {
        self.enter()?;
        let r = self.or_expr();
        self.depth -= 1;
        r
    }

    fn or_expr(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.and_expr()?;
        if !self.is_word("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("or") {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(Expr::Or(items))
    }

    fn and_expr(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.not_expr()?;
        if !self.is_word("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("and") {
            self.bump();
            items.push(self.not_expr()?);
        }
        Ok(Expr::And(items))
    }

    fn not_expr(&mut self) -> Result<Expr, Diagnostic> {
        if self.is_word("not") {
            self.bump();
            self.enter()?;
            let inner = self.not_expr();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.sum()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Eq) => CmpOp::Eq,
                Some(Tok::Ne) => CmpOp::Ne,
                Some(Tok::Lt) => CmpOp::Lt,
                Some(Tok::Gt) => CmpOp::Gt,
                Some(Tok::Le) => CmpOp::Le,
                Some(Tok::Ge) => CmpOp::Ge,
                Some(Tok::Assign) => {
                    return Err(self.error_at(self.col(), "'=' is not a comparison; use '=='"));
                }
                _ => break,
            };
            self.bump();
            rest.push((op, self.sum()?));
        }
        if rest.is_empty() { Ok(first) } else { Ok(Expr::Compare { first: Box::new(first), rest }) }
    }

    fn sum(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.term()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => break,
            };
            self.bump();
            rest.push((op, self.term()?));
        }
        Ok(chain(first, rest))
    }

    fn term(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                Some(Tok::SlashSlash) => BinOp::FloorDiv,
                Some(Tok::Percent) => BinOp::Mod,
                _ => break,
            };
            self.bump();
            rest.push((op, self.unary()?));
        }
        Ok(chain(first, rest))
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        let neg = match self.peek() {
            Some(Tok::Minus) => true,
            Some(Tok::Plus) => false,
            _ => return self.power(),
        };
        self.bump();
        self.enter()?;
        let inner = self.unary();
        self.depth -= 1;
        let inner = inner?;
        Ok(match (neg, inner) {
            // Fold negative literals so `-7` is a literal.
            (true, Expr::Int(i)) => match i.checked_neg() {
                Some(n) => Expr::Int(n),
                None => Expr::Neg(Box::new(Expr::Int(i))),
            },
            (true, Expr::Float(f)) => Expr::Float(-f),
            (true, e) => Expr::Neg(Box::new(e)),
            (false, e) => Expr::Pos(Box::new(e)),
        })
    }

    fn power(&mut self) -> Result<Expr, Diagnostic> {
        let base = self.postfix()?;
        if !self.eat(&Tok::StarStar) {
            return Ok(base);
        }
        self.enter()?;
        let exp = self.unary();
        self.depth -= 1;
        Ok(Expr::Pow(Box::new(base), Box::new(exp?)))
    }

    fn postfix(&mut self) -> Result<Expr, Diagnostic> {
        let mut e = self.atom()?;
        let saved = self.depth;
        while self.peek() == Some(&Tok::LBracket) {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_EXPR_DEPTH {
                let err =
                    self.error_at(self.col(), format!("expression is nested too deeply (limit {MAX_EXPR_DEPTH})"));
                self.depth = saved;
                return Err(err);
            }
            let idx = self.expr();
            let idx = match idx {
                Ok(i) => i,
                Err(d) => {
                    self.depth = saved;
                    return Err(d);
                }
            };
            if let Err(d) = self.expect(&Tok::RBracket, "']'") {
                self.depth = saved;
                return Err(d);
            }
            e = Expr::Index(Box::new(e), Box::new(idx));
        }
        self.depth = saved;
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, Diagnostic> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_here("a value"));
        };
        let col = self.col();
        match tok {
            Tok::Int(i) => {
                self.bump();
                Ok(Expr::Int(i))
            }
            Tok::Float(f) => {
                self.bump();
                Ok(Expr::Float(f))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Str(s.into()))
            }
            Tok::Template(parts) => {
                self.bump();
                Ok(Expr::Template(parts))
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "True" | "true" => return Ok(Expr::Bool(true)),
                    "False" | "false" => return Ok(Expr::Bool(false)),
                    "None" | "null" => return Ok(Expr::Null),
                    "and" | "or" | "not" | "function" | "return" => {
                        return Err(self.error_at(col, format!("unexpected keyword '{name}'")));
                    }
                    _ => {}
                }
                if self.eat(&Tok::LParen) {
                    let args = self.items(&Tok::RParen, "')'")?;
                    return Ok(Expr::Call { name, args });
                }
                Ok(Expr::Name(name))
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBracket => {
                self.bump();
                Ok(Expr::List(self.items(&Tok::RBracket, "']'")?))
            }
            Tok::LBrace => {
                self.bump();
                let mut pairs = Vec::new();
                loop {
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    let k = self.expr()?;
                    self.expect(&Tok::Colon, "':'")?;
                    let v = self.expr()?;
                    pairs.push((k, v));
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    self.expect(&Tok::Comma, "',' or '}'")?;
                }
                Ok(Expr::Dict(pairs))
            }
            _ => Err(self.error_here("a value")),
        }
    }

    /// Comma-separated expressions up to `close` (trailing comma allowed).
    fn items(&mut self, close: &Tok, what: &str) -> Result<Vec<Expr>, Diagnostic> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(&Tok::Comma) {
                return Err(self.error_here(&format!("',' or {what}")));
            }
        }
    }
}

fn chain(first: Expr, rest: Vec<(BinOp, Expr)>) -> Expr {
    if rest.is_empty() { first } else { Expr::Chain { first: Box::new(first), rest } }
}
