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
use std::borrow::Cow;

use avap_abi::wire::{DbReply, DbRequest, HttpBody, HttpMethod, HttpRequest, HttpResponse};
use serde_json::Value as Json;

/// The command that sends requests of a method.
fn command(method: HttpMethod) -> Builtin {
    match method {
        HttpMethod::Get => Builtin::RequestGet,
        HttpMethod::Post => Builtin::RequestPost,
    }
}

/// `RequestGet`
pub(super) fn request_get(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let value = request(interp, HttpMethod::Get, a.value(0)?, a.value(1)?, a.value(2)?, None)?;
    interp.set_var(a.target(3)?, value);
    Ok(())
}

/// `RequestPost`
pub(super) fn request_post(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let (url, query, headers, body) = (a.value(0)?, a.value(1)?, a.value(2)?, a.value(3)?);
    let value = request(interp, HttpMethod::Post, url, query, headers, Some(body))?;
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
    method: HttpMethod,
    url: &Value,
    query: &Value,
    headers: &Value,
    body: Option<&Value>,
) -> Result<Value, Error> {
    let cmd = command(method).name();
    let url = interp.text(url)?;
    if url.trim().is_empty() {
        return Err(Error::runtime(format!("{cmd}: the url is empty")));
    }
    let query = pairs(interp, cmd, "querystring", query)?;
    let headers = pairs(interp, cmd, "headers", headers)?;
    let body = match body {
        None => None,
        Some(b) => request_body(interp, b)?,
    };
    let req = HttpRequest { method, url: Cow::Borrowed(url.as_str()), query, headers, body };
    let reply: HttpResponse = host::call(&mut *interp.host, Capability::Http, cmd, &req)?;
    if method == HttpMethod::Get && reply.status >= 400 {
        let from = if reply.url.is_empty() { url.as_str() } else { reply.url.as_str() };
        let status_line = match reply.reason.as_str() {
            "" => reply.status.to_string(),
            reason => format!("{} {reason}", reply.status),
        };
        return Err(Error::runtime(format!("{cmd}: HTTP {status_line} from {from}")));
    }
    response_body(interp, &reply.body)
}

/// Query-string or header pairs from a dict, JSON object text, or an empty
/// value. Values that are not text are sent as their text form.
fn pairs(interp: &Interp<'_>, cmd: &str, what: &str, value: &Value) -> Result<Vec<(String, String)>, Error> {
    let parsed;
    let map: &Map = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Str(s) if s.trim().is_empty() => return Ok(Vec::new()),
        Value::Dict { map, .. } => map,
        other => {
            let object = match other {
                Value::Str(s) => crate::value::data_from_text(s),
                _ => None,
            };
            match object {
                Some(Ok(Value::Dict { map, .. })) => {
                    parsed = map;
                    &parsed
                }
                Some(Err(_)) => return Err(Limits::value_depth_error()),
                _ => {
                    return Err(Error::runtime(format!(
                        "{cmd}: {what} must be a dict, the text of one (JSON or AVAP literal syntax), or empty"
                    )));
                }
            }
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map.iter() {
        out.push((k.clone(), interp.text(v)?));
    }
    Ok(out)
}

/// A dict or list, or text that parses as JSON, is sent as JSON; other text
/// as it is; empty sends no body.
fn request_body(interp: &Interp<'_>, body: &Value) -> Result<Option<HttpBody>, Error> {
    Ok(Some(match body {
        Value::Null => return Ok(None),
        Value::Str(s) if s.is_empty() => return Ok(None),
        Value::Str(s) => {
            if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                HttpBody::Json(s.to_string())
            } else {
                match crate::value::data_from_text(s) {
                    // A dict or list in AVAP literal syntax goes as its JSON.
                    Some(Ok(data @ (Value::Dict { .. } | Value::List { .. }))) => {
                        let text = crate::value::to_json_capped(&data, interp.limits.max_string_bytes)
                            .map_err(|_| interp.limits.string_error())?;
                        HttpBody::Json(String::from_utf8_lossy(&text).into_owned())
                    }
                    Some(Err(_)) => return Err(Limits::value_depth_error()),
                    _ => HttpBody::Text(s.to_string()),
                }
            }
        }
        other => {
            let text = serde_json::to_string(other).map_err(|e| Error::runtime(format!("RequestPost: {e}")))?;
            if text.len() > interp.limits.max_string_bytes {
                return Err(interp.limits.string_error());
            }
            HttpBody::Json(text)
        }
    }))
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
    let request = DbRequest { sql: parts, params };
    let (columns, rows) = match host::call(&mut *interp.host, Capability::Db, cmd, &request)? {
        DbReply::<Vec<Json>>::Affected { affected } => return Ok(Value::str(format!("Success: {affected}"))),
        DbReply::Rows { columns, rows } => (columns, rows),
    };
    if rows.len() > interp.limits.max_collection_len {
        return Err(interp.limits.collection_error());
    }
    let mut out = Vec::with_capacity(rows.len());
    for cells in rows {
        let mut dict = Map::new();
        for (name, cell) in columns.iter().zip(cells) {
            dict.insert(name.clone(), Value::from_json(cell).map_err(|_| Limits::value_depth_error())?);
        }
        out.push(Value::dict(dict));
    }
    Ok(Value::list(out))
}
