//! The non-control commands: `run` reads a command's arguments by kind,
//! then has one `match` arm per [`Builtin`], each calling its
//! implementation: `vars.rs` (variables and the request), `collections.rs`
//! (lists and dicts), `text.rs` (text and crypto), `datetime.rs` (date and
//! time) and `outside.rs` (the commands that need a host capability: HTTP,
//! database).
//!
//! Control-flow commands (`if`, `startLoop`, `try`, ...) are structural:
//! the parser turns them into blocks and the evaluator runs them.

mod collections;
pub(crate) mod datetime;
mod outside;
pub(crate) mod text;
mod vars;

use crate::ast::CmdArg;
use crate::builtins::Builtin;
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::Limits;
use crate::value::{Value, parse_numeric_text};

/// An argument after reading.
enum Resolved {
    Target(String),
    Source(String, Value),
    Value(Value),
}

/// A command's arguments after reading, by position.
struct Args {
    cmd: &'static str,
    items: Vec<Resolved>,
}

impl Args {
    /// Reads every argument by its kind, in order.
    fn read(interp: &mut Interp<'_>, builtin: Builtin, args: &[CmdArg]) -> Result<Args, Error> {
        let mut items = Vec::with_capacity(args.len());
        for arg in args {
            items.push(match arg {
                CmdArg::Target(name) => Resolved::Target(name.clone()),
                CmdArg::Source(name) => {
                    let value = interp.get_var(name).cloned().unwrap_or(Value::Null);
                    Resolved::Source(name.clone(), value)
                }
                CmdArg::Value(va) => Resolved::Value(interp.resolve_value(va)?),
            });
        }
        Ok(Args { cmd: builtin.name(), items })
    }

    fn internal(&self, i: usize) -> Error {
        Error::runtime(format!("internal error: argument {} of {} has the wrong kind", i + 1, self.cmd))
    }
    fn target(&self, i: usize) -> Result<&str, Error> {
        match self.items.get(i) {
            Some(Resolved::Target(n)) => Ok(n),
            _ => Err(self.internal(i)),
        }
    }
    fn source(&self, i: usize) -> Result<(&str, &Value), Error> {
        match self.items.get(i) {
            Some(Resolved::Source(n, v)) => Ok((n, v)),
            _ => Err(self.internal(i)),
        }
    }
    fn value(&self, i: usize) -> Result<&Value, Error> {
        match self.items.get(i) {
            Some(Resolved::Value(v)) => Ok(v),
            _ => Err(self.internal(i)),
        }
    }
}

/// Runs a non-control command: reads its arguments by kind, then acts.
pub(crate) fn run(interp: &mut Interp<'_>, builtin: Builtin, args: &[CmdArg]) -> Result<(), Error> {
    // ormDirect reads its prompt itself: a template's parts become bound
    // parameters instead of being spliced into the text.
    let a = if builtin == Builtin::OrmDirect {
        Args { cmd: builtin.name(), items: Vec::new() }
    } else {
        Args::read(interp, builtin, args)?
    };
    match builtin {
        Builtin::AddVar => vars::add_var(interp, &a),
        Builtin::AddResult => vars::add_result(interp, &a),
        Builtin::AddParam => vars::add_param(interp, &a),
        Builtin::GetQueryParamList => vars::get_query_param_list(interp, &a),
        Builtin::GetListLen => collections::get_list_len(interp, &a),
        Builtin::ItemFromList => collections::item_from_list(interp, &a),
        Builtin::VariableToList => collections::variable_to_list(interp, &a),
        Builtin::AddVariableToJson => collections::add_variable_to_json(interp, &a),
        Builtin::VariableFromJson => collections::variable_from_json(interp, &a),
        Builtin::EncodeSha256 => text::encode_sha256(interp, &a),
        Builtin::EncodeMd5 => text::encode_md5(interp, &a),
        Builtin::RandomString => text::random_string(interp, &a),
        Builtin::Replace => text::replace(interp, &a),
        Builtin::GetRegex => text::get_regex(interp, &a),
        Builtin::GetDateTime => datetime::get_date_time(interp, &a),
        Builtin::GetTimeStamp => datetime::get_time_stamp(interp, &a),
        Builtin::StampToDatetime => datetime::stamp_to_datetime(interp, &a),
        Builtin::RequestGet => outside::request_get(interp, &a),
        Builtin::RequestPost => outside::request_post(interp, &a),
        Builtin::OrmDirect => outside::orm_direct(interp, args),
        // Structural: the parser made them blocks, never command statements.
        Builtin::If
        | Builtin::Else
        | Builtin::End
        | Builtin::StartLoop
        | Builtin::EndLoop
        | Builtin::Try
        | Builtin::Exception => {
            Err(Error::runtime(format!("internal error: control command '{}' run as a command", builtin.name())))
        }
    }
}

fn check_len(limits: &Limits, len: usize) -> Result<(), Error> {
    if len > limits.max_collection_len {
        return Err(limits.collection_error());
    }
    Ok(())
}

/// Python-style list indexing (negative counts from the end).
pub(crate) fn list_index(items: &[Value], index: i64) -> Option<&Value> {
    let len = i64::try_from(items.len()).ok()?;
    let i = if index < 0 { len.checked_add(index)? } else { index };
    items.get(usize::try_from(i).ok()?)
}

/// Reads a value as an integer: ints, integral floats and integer text.
pub(crate) fn integer_arg(value: &Value, cmd: &str, param: &str) -> Result<i64, Error> {
    let as_int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(*f as i64),
        _ => None,
    };
    let n = match value {
        Value::Str(s) => parse_numeric_text(s.trim()).as_ref().and_then(as_int),
        other => as_int(other),
    };
    n.ok_or_else(|| {
        Error::runtime(format!("{cmd}: '{param}' must be an integer, got {} {}", value.type_name(), short(value)))
    })
}

/// A short rendering of a value for error messages.
pub(crate) fn short(value: &Value) -> String {
    let text = match value.display(200) {
        Ok(t) => t,
        Err(_) => return "(too long to show)".to_string(),
    };
    let mut out: String = text.chars().take(60).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    match value {
        Value::Str(_) => format!("'{out}'"),
        _ => out,
    }
}
