//! The command table (all 27 commands of the standard catalog, with their
//! ordered parameters and kinds as in COMMANDS.md) and the implementations
//! of the commands this interpreter supports.
//!
//! Control-flow commands (`if`, `startLoop`, `try`, ...) are structural:
//! the parser turns them into blocks and the evaluator runs them. Text and
//! crypto commands live in `text.rs`, date and time in `datetime.rs`, and the
//! commands that need a host capability (HTTP, database) in `outside.rs`.

use crate::ast::CmdArg;
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::{Limits, MAX_VALUE_DEPTH};
use crate::value::{Map, Value, digits_only_int, parse_numeric_text};
use crate::{datetime, outside, text};

/// Parameter kind (COMMANDS.md): T target, S source, V value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Target,
    Source,
    Value,
}

/// How a command is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Structural: handled by the parser and evaluator.
    Control,
    /// Implemented in [`run`].
    Builtin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub params: &'static [Param],
    pub group: Group,
}

impl CommandSpec {
    /// The parameter names, e.g. `targetVarName, varValue`.
    pub fn interface(&self) -> String {
        self.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    }

    /// Position of the target parameter, if the command has one.
    pub fn target_index(&self) -> Option<usize> {
        self.params.iter().position(|p| p.kind == Kind::Target)
    }

    /// The error for a wrong number of arguments.
    pub fn arity_message(&self, got: usize) -> String {
        let n = self.params.len();
        format!("{} expects {n} argument{} ({}), got {got}", self.name, if n == 1 { "" } else { "s" }, self.interface())
    }
}

const fn t(name: &'static str) -> Param {
    Param { name, kind: Kind::Target }
}
const fn s(name: &'static str) -> Param {
    Param { name, kind: Kind::Source }
}
const fn v(name: &'static str) -> Param {
    Param { name, kind: Kind::Value }
}
const fn cmd(name: &'static str, params: &'static [Param], group: Group) -> CommandSpec {
    CommandSpec { name, params, group }
}

use Group::{Builtin, Control};

/// The standard catalog.
pub static COMMANDS: [CommandSpec; 27] = [
    // Variables and request
    cmd("addVar", &[t("targetVarName"), v("varValue")], Builtin),
    cmd("addResult", &[s("sourceVariable")], Builtin),
    cmd("addParam", &[v("param"), t("variable")], Builtin),
    cmd("getQueryParamList", &[t("TargetVariable")], Builtin),
    // Control flow
    cmd("if", &[v("variable"), v("variableValue"), v("comparator")], Control),
    cmd("else", &[], Control),
    cmd("end", &[], Control),
    cmd("startLoop", &[t("varName"), v("from"), v("to")], Control),
    cmd("endLoop", &[], Control),
    cmd("try", &[], Control),
    cmd("exception", &[t("error")], Control),
    // HTTP
    cmd("RequestGet", &[v("url"), v("querystring"), v("headers"), t("o_result")], Builtin),
    cmd("RequestPost", &[v("url"), v("querystring"), v("headers"), v("body"), t("o_result")], Builtin),
    // Database
    cmd("ormDirect", &[v("prompt"), t("TargetVariable")], Builtin),
    // Text and crypto
    cmd("encodeSHA256", &[v("SourceVariable"), t("TargetVariable")], Builtin),
    cmd("encodeMD5", &[v("SourceVariable"), t("TargetVariable")], Builtin),
    cmd("randomString", &[v("Pattern"), v("Length"), t("TargetVariable")], Builtin),
    cmd("replace", &[v("SourceVariable"), v("rePattern"), v("newValue"), t("TargetVariable")], Builtin),
    cmd("getRegex", &[v("SourceVariable"), v("rePattern"), t("TargetVariable")], Builtin),
    // Date and time
    cmd("getDateTime", &[v("Format"), v("TimeDelta"), v("TimeZone"), t("TargetVariable")], Builtin),
    cmd("getTimeStamp", &[v("DateString"), v("Format"), v("TimeDelta"), t("TargetVariable")], Builtin),
    cmd("stampToDatetime", &[v("timestamp"), v("Format"), v("TimeDelta"), t("TargetVariable")], Builtin),
    // Collections and JSON
    cmd("getListLen", &[s("SourceVariable"), t("TargetVariable")], Builtin),
    cmd("itemFromList", &[s("SourceVariable"), v("index"), t("TargetVariable")], Builtin),
    cmd("variableToList", &[v("element"), t("TargetVariable")], Builtin),
    cmd("AddvariableToJSON", &[v("Key"), v("Value"), t("TargetVariable")], Builtin),
    cmd("variableFromJSON", &[s("SourceVariable"), v("key"), t("TargetVariable")], Builtin),
];

/// Finds a command by its exact (case-sensitive) name.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

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

/// Runs a non-control command: reads its arguments by kind, then acts.
pub(crate) fn run(interp: &mut Interp<'_>, spec: &'static CommandSpec, args: &[CmdArg]) -> Result<(), Error> {
    if spec.name == "ormDirect" {
        // The prompt is read by `orm_direct` itself: a template's parts
        // become bound parameters instead of being spliced into the text.
        let (Some(CmdArg::Value(prompt)), Some(CmdArg::Target(target))) = (args.first(), args.get(1)) else {
            return Err(Error::runtime("internal error: ormDirect has the wrong arguments"));
        };
        let value = outside::orm_direct(interp, prompt)?;
        interp.set_var(target, value);
        return Ok(());
    }
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
    let a = Args { cmd: spec.name, items };
    match spec.name {
        "addVar" => {
            let value = match a.value(1)? {
                Value::Str(s) => digits_only_int(s).map_or_else(|| Value::Str(s.clone()), Value::Int),
                other => other.clone(),
            };
            interp.set_var(a.target(0)?, value);
            Ok(())
        }
        "addResult" => {
            let (name, value) = a.source(0)?;
            interp.results.insert(name.to_string(), value.clone());
            Ok(())
        }
        "addParam" => {
            let name = interp.text(a.value(0)?)?;
            let value = request_param(interp, &name);
            interp.set_var(a.target(1)?, value);
            Ok(())
        }
        "getQueryParamList" => {
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
        "getListLen" => {
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
        "itemFromList" => {
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
        "variableToList" => {
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
        "AddvariableToJSON" => {
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
        "variableFromJSON" => {
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
        "encodeSHA256" | "encodeMD5" => {
            let text = interp.text(a.value(0)?)?;
            let hex = if spec.name == "encodeMD5" { text::md5_hex(&text) } else { text::sha256_hex(&text) };
            interp.set_var(a.target(1)?, Value::str(hex));
            Ok(())
        }
        "randomString" => {
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
        "replace" => {
            let source = interp.text(a.value(0)?)?;
            let re = text::compile("replace", &interp.text(a.value(1)?)?)?;
            let new_value = interp.text(a.value(2)?)?;
            let out = text::replace_all(&re, &source, &new_value, &interp.limits)?;
            interp.set_var(a.target(3)?, Value::str(out));
            Ok(())
        }
        "getRegex" => {
            let source = interp.text(a.value(0)?)?;
            let re = text::compile("getRegex", &interp.text(a.value(1)?)?)?;
            let found = text::all_matches(&re, &source).map_or(Value::Null, Value::str);
            interp.set_var(a.target(2)?, found);
            Ok(())
        }
        "getDateTime" => {
            let fmt = interp.text(a.value(0)?)?;
            let delta = datetime::seconds_arg(a.value(1)?, "getDateTime", "TimeDelta")?;
            let tz = interp.text(a.value(2)?)?;
            let value = datetime::date_time_at(datetime::now()?, &fmt, delta, &tz, &interp.limits)?;
            interp.set_var(a.target(3)?, value);
            Ok(())
        }
        "getTimeStamp" => {
            let date = interp.text(a.value(0)?)?;
            let fmt = interp.text(a.value(1)?)?;
            let delta = datetime::seconds_arg(a.value(2)?, "getTimeStamp", "TimeDelta")?;
            let stamp = datetime::parse_timestamp(&date, &fmt, delta)?;
            interp.set_var(a.target(3)?, Value::Float(stamp));
            Ok(())
        }
        "stampToDatetime" => {
            let stamp = datetime::seconds_arg(a.value(0)?, "stampToDatetime", "timestamp")?;
            let fmt = interp.text(a.value(1)?)?;
            let delta = datetime::seconds_arg(a.value(2)?, "stampToDatetime", "TimeDelta")?;
            let out = datetime::stamp_to_datetime(stamp, &fmt, delta, &interp.limits)?;
            interp.set_var(a.target(3)?, Value::str(out));
            Ok(())
        }
        "RequestGet" => {
            let value = outside::request(interp, "RequestGet", a.value(0)?, a.value(1)?, a.value(2)?, None)?;
            interp.set_var(a.target(3)?, value);
            Ok(())
        }
        "RequestPost" => {
            let (url, query, headers, body) = (a.value(0)?, a.value(1)?, a.value(2)?, a.value(3)?);
            let value = outside::request(interp, "RequestPost", url, query, headers, Some(body))?;
            interp.set_var(a.target(4)?, value);
            Ok(())
        }
        name => Err(Error::runtime(format!("internal error: command '{name}' has no implementation"))),
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
