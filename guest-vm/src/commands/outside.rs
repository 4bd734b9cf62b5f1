//! The commands that reach outside the sandbox, each through one host
//! capability ([`crate::host`]): `RequestGet` and `RequestPost` (`http`),
//! `ormDirect` (`db`). This file only builds requests and reads replies; the
//! host performs the I/O and enforces every limit and destination rule.

use super::Args;
use crate::ast::{CmdArg, Expr, TemplatePart, ValueArg};
use crate::builtins::Builtin;
use crate::error::Error;
use crate::eval::Interp;
use crate::host::{self, Capability};
use crate::limits::Limits;
use crate::value::{Map, Value};
use serde_json::{Value as Json, json};

/// The HTTP method of a request command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `RequestGet`
    Get,
    /// `RequestPost`
    Post,
}

impl Method {
    fn command(self) -> Builtin {
        match self {
            Method::Get => Builtin::RequestGet,
            Method::Post => Builtin::RequestPost,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// `RequestGet`
pub(super) fn request_get(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let value = request(interp, Method::Get, a.value(0)?, a.value(1)?, a.value(2)?, None)?;
    interp.set_var(a.target(3)?, value);
    Ok(())
}

/// `RequestPost`
pub(super) fn request_post(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let (url, query, headers, body) = (a.value(0)?, a.value(1)?, a.value(2)?, a.value(3)?);
    let value = request(interp, Method::Post, url, query, headers, Some(body))?;
    interp.set_var(a.target(4)?, value);
    Ok(())
}

/// `ormDirect`: the prompt comes unread, for [`orm_statement`].
pub(super) fn orm_direct(interp: &mut Interp<'_>, args: &[CmdArg]) -> Result<(), Error> {
    let (Some(CmdArg::Value(prompt)), Some(CmdArg::Target(target))) = (args.first(), args.get(1)) else {
        return Err(Error::runtime("internal error: ormDirect has the wrong arguments"));
    };
    let value = orm_statement(interp, prompt)?;
    interp.set_var(target, value);
    Ok(())
}

/// `RequestGet` / `RequestPost`: performs the request through the host and
/// returns the response body (parsed JSON, or text). `body` is `None` for GET.
fn request(
    interp: &mut Interp<'_>,
    method: Method,
    url: &Value,
    query: &Value,
    headers: &Value,
    body: Option<&Value>,
) -> Result<Value, Error> {
    let cmd = method.command().name();
    let url = interp.text(url)?;
    if url.trim().is_empty() {
        return Err(Error::runtime(format!("{cmd}: the url is empty")));
    }
    let query = pairs(interp, cmd, "querystring", query)?;
    let headers = pairs(interp, cmd, "headers", headers)?;
    let body = match body {
        None => Json::Null,
        Some(b) => request_body(interp, b)?,
    };
    let req = json!({ "method": method.as_str(), "url": url, "query": query, "headers": headers, "body": body });
    let reply = host::call(&mut *interp.host, Capability::Http, cmd, &req)?;
    let status = reply.get("status").and_then(Json::as_u64).unwrap_or(0);
    let text = reply.get("body").and_then(Json::as_str).unwrap_or_default();
    if method == Method::Get && status >= 400 {
        let from = reply.get("url").and_then(Json::as_str).unwrap_or(&url);
        let status_line = match reply.get("reason").and_then(Json::as_str) {
            Some(reason) if !reason.is_empty() => format!("{status} {reason}"),
            _ => status.to_string(),
        };
        return Err(Error::runtime(format!("{cmd}: HTTP {status_line} from {from}")));
    }
    response_body(interp, text)
}

/// Query-string or header pairs from a dict, JSON object text, or an empty
/// value. Values that are not text are sent as their text form.
fn pairs(interp: &Interp<'_>, cmd: &str, what: &str, value: &Value) -> Result<Vec<[String; 2]>, Error> {
    let parsed;
    let map: &Map = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Str(s) if s.trim().is_empty() => return Ok(Vec::new()),
        Value::Dict { map, .. } => map,
        other => {
            let object = match other {
                Value::Str(s) => serde_json::from_str::<Json>(s).ok(),
                _ => None,
            };
            let Some(Json::Object(obj)) = object else {
                return Err(Error::runtime(format!(
                    "{cmd}: {what} must be a dict, the JSON text of an object, or empty"
                )));
            };
            parsed = obj
                .into_iter()
                .map(|(k, v)| Ok((k, Value::from_json(v).map_err(|_| Limits::value_depth_error())?)))
                .collect::<Result<Map, Error>>()?;
            &parsed
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map.iter() {
        out.push([k.clone(), interp.text(v)?]);
    }
    Ok(out)
}

/// A dict or list, or text that parses as JSON, is sent as JSON; other text
/// as it is; empty sends no body.
fn request_body(interp: &Interp<'_>, body: &Value) -> Result<Json, Error> {
    Ok(match body {
        Value::Null => Json::Null,
        Value::Str(s) if s.is_empty() => Json::Null,
        Value::Str(s) => {
            if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                json!({ "json": &**s })
            } else {
                json!({ "text": &**s })
            }
        }
        other => {
            let text = serde_json::to_string(other).map_err(|e| Error::runtime(format!("RequestPost: {e}")))?;
            if text.len() > interp.limits.max_string_bytes {
                return Err(interp.limits.string_error());
            }
            json!({ "json": text })
        }
    })
}

/// A JSON body becomes its value; any other body is stored as text.
fn response_body(interp: &Interp<'_>, text: &str) -> Result<Value, Error> {
    if text.len() > interp.limits.max_string_bytes {
        return Err(interp.limits.string_error());
    }
    match serde_json::from_str::<Json>(text) {
        Ok(json) => Value::from_json(json).map_err(|_| Limits::value_depth_error()),
        Err(_) => Ok(Value::str(text)),
    }
}

/// `ormDirect`: a template written as the argument sends its `${name}` parts
/// as bound parameters; any other value is sent as the statement's text.
fn orm_statement(interp: &mut Interp<'_>, prompt: &ValueArg) -> Result<Value, Error> {
    let cmd = Builtin::OrmDirect.name();
    let mut parts = vec![String::new()];
    let mut params = Vec::new();
    match prompt {
        ValueArg::Expr(Expr::Template(template)) => {
            for part in template {
                match part {
                    TemplatePart::Text(t) => {
                        if let Some(last) = parts.last_mut() {
                            last.push_str(t);
                        }
                    }
                    TemplatePart::Var(name) => {
                        let value = interp.template_var(name)?;
                        params.push(serde_json::to_value(value).map_err(|e| Error::runtime(format!("{cmd}: {e}")))?);
                        parts.push(String::new());
                    }
                }
            }
        }
        arg => {
            let value = interp.resolve_value(arg)?;
            parts[0] = interp.text(&value)?;
        }
    }
    if parts.iter().all(|p| p.trim().is_empty()) {
        return Err(Error::runtime(format!("{cmd}: the statement is empty")));
    }
    let reply = host::call(&mut *interp.host, Capability::Db, cmd, &json!({ "sql": parts, "params": params }))?;
    if let Some(n) = reply.get("affected").and_then(Json::as_u64) {
        return Ok(Value::str(format!("Success: {n}")));
    }
    let columns: Vec<&str> = match reply.get("columns").and_then(Json::as_array) {
        Some(cols) => cols.iter().map(|c| c.as_str().unwrap_or_default()).collect(),
        None => return Err(Error::runtime(format!("{cmd}: the host's reply has neither rows nor a row count"))),
    };
    let rows = match reply.get("rows") {
        Some(Json::Array(rows)) => rows.as_slice(),
        _ => &[],
    };
    if rows.len() > interp.limits.max_collection_len {
        return Err(interp.limits.collection_error());
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let cells = row.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut dict = Map::new();
        for (name, cell) in columns.iter().zip(cells) {
            dict.insert((*name).to_string(), Value::from_json(cell.clone()).map_err(|_| Limits::value_depth_error())?);
        }
        out.push(Value::dict(dict));
    }
    Ok(Value::list(out))
}
