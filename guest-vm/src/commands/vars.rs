//! Variables and the request: `addVar`, `addResult`, `addParam`,
//! `getQueryParamList`.

use super::{Args, check_len};
use crate::error::Error;
use crate::eval::Interp;
use crate::value::{Map, Value, digits_only_int, parse_numeric_text};

/// `addVar`
pub(super) fn add_var(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let value = match a.value(1)? {
        Value::Str(s) => digits_only_int(s).map_or_else(|| Value::Str(s.clone()), Value::Int),
        other => other.clone(),
    };
    interp.set_var(a.target(0)?, value);
    Ok(())
}

/// `addResult`
pub(super) fn add_result(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let (name, value) = a.source(0)?;
    interp.results.insert(name.to_string(), value.clone());
    Ok(())
}

/// `addParam`
pub(super) fn add_param(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let name = interp.text(a.value(0)?)?;
    let value = request_param(interp, &name);
    interp.set_var(a.target(1)?, value);
    Ok(())
}

/// `getQueryParamList`
pub(super) fn get_query_param_list(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
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
