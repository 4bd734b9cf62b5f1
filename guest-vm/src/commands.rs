//! The implementations of the non-control commands: arguments read by
//! kind, then one arm per [`Builtin`].
//!
//! Control-flow commands (`if`, `startLoop`, `try`, ...) are structural:
//! the parser turns them into blocks and the evaluator runs them. Text and
//! crypto commands live in `text.rs`, date and time in `datetime.rs`, and the
//! commands that need a host capability (HTTP, database) in `outside.rs`.

use crate::ast::CmdArg;
use crate::builtins::Builtin;
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::{Limits, MAX_VALUE_DEPTH};
use crate::outside::{self, Method};
use crate::value::{Map, Value, digits_only_int, parse_numeric_text};
use crate::{datetime, text};

/// An argument after reading.
enum Resolved {
    Target(String),
    Source(String, Value),
    Value(Value),
}

struct Args {
    cmd: &'static str,
    items: Vec<Resolved>,
}

impl Args {
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
        Builtin::AddVar => {
            let value = match a.value(1)? {
                Value::Str(s) => digits_only_int(s).map_or_else(|| Value::Str(s.clone()), Value::Int),
                other => other.clone(),
            };
            interp.set_var(a.target(0)?, value);
            Ok(())
        }
        Builtin::AddResult => {
            let (name, value) = a.source(0)?;
            interp.results.insert(name.to_string(), value.clone());
            Ok(())
        }
        Builtin::AddParam => {
            let name = interp.text(a.value(0)?)?;
            let value = request_param(interp, &name);
            interp.set_var(a.target(1)?, value);
            Ok(())
        }
        Builtin::GetQueryParamList => {
            let limits = interp.limits.clone();
            check_len(&limits, interp.request.query.len())?;
            let list: Vec<Value> = interp
                .request
                .query
                .iter()
                .map(|(k, v)| {
                    let mut m = Map::new();
                    m.insert(k.clone(), Value::str(v.as_str()));
                    Value::dict(m)
                })
                .collect();
            interp.set_var(a.target(0)?, Value::list(list));
            Ok(())
        }
        Builtin::GetListLen => {
            let (name, value) = a.source(0)?;
            let len = match value {
                Value::Null => 0,
                Value::Str(s) => s.chars().count(),
                Value::List { items, .. } => items.len(),
                Value::Dict { map, .. } => map.len(),
                other => {
                    return Err(Error::runtime(format!(
                        "getListLen: '{name}' holds a {}, not a list, string or dict",
                        other.type_name()
                    )));
                }
            };
            interp.set_var(a.target(1)?, Value::Int(i64::try_from(len).unwrap_or(i64::MAX)));
            Ok(())
        }
        Builtin::ItemFromList => {
            let (name, value) = a.source(0)?;
            let Value::List { items, .. } = value else {
                return Err(Error::runtime(format!(
                    "itemFromList: '{name}' holds a {}, not a list",
                    value.type_name()
                )));
            };
            let index = integer_arg(a.value(1)?, "itemFromList", "index")?;
            let item = list_index(items, index).ok_or_else(|| {
                Error::runtime(format!(
                    "itemFromList: index {index} is out of range for '{name}' (length {})",
                    items.len()
                ))
            })?;
            let item = item.clone();
            interp.set_var(a.target(2)?, item);
            Ok(())
        }
        Builtin::VariableToList => {
            let element = a.value(0)?.clone();
            let target = a.target(1)?;
            let limits = interp.limits.clone();
            if element.depth() >= MAX_VALUE_DEPTH {
                return Err(Limits::value_depth_error());
            }
            match interp.var_mut(target) {
                Some(Value::List { items, depth }) => {
                    check_len(&limits, items.len().saturating_add(1))?;
                    *depth = (*depth).max(element.depth() + 1);
                    std::rc::Rc::make_mut(items).push(element);
                }
                Some(Value::Null) | None => interp.set_var(target, Value::list(vec![element])),
                Some(other) => {
                    return Err(Error::runtime(format!(
                        "variableToList: '{target}' holds a {}, not a list",
                        other.type_name()
                    )));
                }
            }
            Ok(())
        }
        Builtin::AddVariableToJson => {
            let key = interp.text(a.value(0)?)?;
            let value = a.value(1)?.clone();
            let target = a.target(2)?;
            let limits = interp.limits.clone();
            if value.depth() >= MAX_VALUE_DEPTH {
                return Err(Limits::value_depth_error());
            }
            match interp.var_mut(target) {
                Some(Value::Dict { map, depth }) => {
                    if !map.contains_key(&key) {
                        check_len(&limits, map.len().saturating_add(1))?;
                    }
                    *depth = (*depth).max(value.depth() + 1);
                    std::rc::Rc::make_mut(map).insert(key, value);
                }
                Some(Value::Null) | None => {
                    let mut m = Map::new();
                    m.insert(key, value);
                    interp.set_var(target, Value::dict(m));
                }
                Some(other) => {
                    return Err(Error::runtime(format!(
                        "AddvariableToJSON: '{target}' holds a {}, not a dict",
                        other.type_name()
                    )));
                }
            }
            Ok(())
        }
        Builtin::VariableFromJson => {
            let (name, source) = a.source(0)?;
            let key = interp.text(a.value(1)?)?;
            let value = match source {
                Value::Null => Value::Null,
                Value::Dict { map, .. } => map.get(&key).cloned().unwrap_or(Value::Null),
                Value::Str(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(mut obj)) => match obj.remove(&key) {
                        Some(v) => Value::from_json(v).map_err(|_| Limits::value_depth_error())?,
                        None => Value::Null,
                    },
                    _ => {
                        return Err(Error::runtime(format!(
                            "variableFromJSON: '{name}' holds text that is not a JSON object"
                        )));
                    }
                },
                other => {
                    return Err(Error::runtime(format!(
                        "variableFromJSON: '{name}' holds a {}, not a dict",
                        other.type_name()
                    )));
                }
            };
            interp.set_var(a.target(2)?, value);
            Ok(())
        }
        Builtin::EncodeSha256 => {
            let text = interp.text(a.value(0)?)?;
            interp.set_var(a.target(1)?, Value::str(text::sha256_hex(&text)));
            Ok(())
        }
        Builtin::EncodeMd5 => {
            let text = interp.text(a.value(0)?)?;
            interp.set_var(a.target(1)?, Value::str(text::md5_hex(&text)));
            Ok(())
        }
        Builtin::RandomString => {
            let pattern = interp.text(a.value(0)?)?;
            let class = text::parse_class(&pattern)?;
            let length = integer_arg(a.value(1)?, "randomString", "Length")?;
            let length = usize::try_from(length)
                .map_err(|_| Error::runtime(format!("randomString: 'Length' must not be negative, got {length}")))?;
            if length > interp.limits.max_string_bytes {
                return Err(interp.limits.string_error());
            }
            let out = text::random_string(&class, length, &interp.limits)?;
            interp.set_var(a.target(2)?, Value::str(out));
            Ok(())
        }
        Builtin::Replace => {
            let source = interp.text(a.value(0)?)?;
            let re = text::compile("replace", &interp.text(a.value(1)?)?)?;
            let new_value = interp.text(a.value(2)?)?;
            let out = text::replace_all(&re, &source, &new_value, &interp.limits)?;
            interp.set_var(a.target(3)?, Value::str(out));
            Ok(())
        }
        Builtin::GetRegex => {
            let source = interp.text(a.value(0)?)?;
            let re = text::compile("getRegex", &interp.text(a.value(1)?)?)?;
            let found = text::all_matches(&re, &source).map_or(Value::Null, Value::str);
            interp.set_var(a.target(2)?, found);
            Ok(())
        }
        Builtin::GetDateTime => {
            let fmt = interp.text(a.value(0)?)?;
            let delta = datetime::seconds_arg(a.value(1)?, "getDateTime", "TimeDelta")?;
            let tz = interp.text(a.value(2)?)?;
            let value = datetime::date_time_at(datetime::now()?, &fmt, delta, &tz, &interp.limits)?;
            interp.set_var(a.target(3)?, value);
            Ok(())
        }
        Builtin::GetTimeStamp => {
            let date = interp.text(a.value(0)?)?;
            let fmt = interp.text(a.value(1)?)?;
            let delta = datetime::seconds_arg(a.value(2)?, "getTimeStamp", "TimeDelta")?;
            let stamp = datetime::parse_timestamp(&date, &fmt, delta)?;
            interp.set_var(a.target(3)?, Value::Float(stamp));
            Ok(())
        }
        Builtin::StampToDatetime => {
            let stamp = datetime::seconds_arg(a.value(0)?, "stampToDatetime", "timestamp")?;
            let fmt = interp.text(a.value(1)?)?;
            let delta = datetime::seconds_arg(a.value(2)?, "stampToDatetime", "TimeDelta")?;
            let out = datetime::stamp_to_datetime(stamp, &fmt, delta, &interp.limits)?;
            interp.set_var(a.target(3)?, Value::str(out));
            Ok(())
        }
        Builtin::RequestGet => {
            let value = outside::request(interp, Method::Get, a.value(0)?, a.value(1)?, a.value(2)?, None)?;
            interp.set_var(a.target(3)?, value);
            Ok(())
        }
        Builtin::RequestPost => {
            let (url, query, headers, body) = (a.value(0)?, a.value(1)?, a.value(2)?, a.value(3)?);
            let value = outside::request(interp, Method::Post, url, query, headers, Some(body))?;
            interp.set_var(a.target(4)?, value);
            Ok(())
        }
        Builtin::OrmDirect => {
            let (Some(CmdArg::Value(prompt)), Some(CmdArg::Target(target))) = (args.first(), args.get(1)) else {
                return Err(Error::runtime("internal error: ormDirect has the wrong arguments"));
            };
            let value = outside::orm_direct(interp, prompt)?;
            interp.set_var(target, value);
            Ok(())
        }
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

/// `addParam`: the query string first (first occurrence), then the body's
/// top-level keys. Numeric text becomes an int or float; other JSON values
/// are kept; a missing parameter is null.
fn request_param(interp: &Interp<'_>, name: &str) -> Value {
    if let Some((_, v)) = interp.request.query.iter().find(|(k, _)| k == name) {
        return parse_numeric_text(v).unwrap_or_else(|| Value::str(v.as_str()));
    }
    match interp.request.body.get(name) {
        Some(Value::Str(s)) => parse_numeric_text(s).unwrap_or_else(|| Value::Str(s.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    }
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
