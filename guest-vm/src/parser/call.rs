//! Calls on one line: the arguments, split leniently, and a command's
//! arguments matched to its parameters.

use super::expr::parse_tokens;
use super::{COMPARATORS, KEYWORDS, LineResult, LineStmt, RawArg, RawKind, one, skip_ws, trim_end};
use crate::ast::{CmdArg, Expr, ValueArg};
use crate::builtins::{Builtin, Group, Kind};
use crate::error::Diagnostic;
use crate::tokenizer::{Tok, Token, is_identifier, opens_string, skip_string, tokenize};

/// Splits the arguments of a call whose `(` is just before `start`.
/// Returns the argument spans and the index of the closing `)`.
pub(super) fn split_args(
    seg: &[char],
    start: usize,
    line: usize,
    col: usize,
) -> Result<(Vec<(usize, usize)>, usize), Diagnostic> {
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
pub(super) fn parse_call(
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

pub(super) fn value_arg(arg: RawArg) -> ValueArg {
    match arg.kind {
        RawKind::Empty => ValueArg::Empty,
        RawKind::Word(w) => ValueArg::Word(w),
        RawKind::Expr(e) => ValueArg::Expr(e),
        RawKind::Raw(t, _) => ValueArg::Raw(t),
    }
}

/// A call of a built-in command: its arguments matched to its parameters
/// (the target of `x = cmd(...)` merged in); control commands become the
/// block markers phase 2 matches.
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
        // `if` and `exception` returned above; the rest are not control flow.
        _ => Ok(LineStmt::Command { builtin, args: out }),
    }
}
