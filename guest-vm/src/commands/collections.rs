//! Lists and dicts: `getListLen`, `itemFromList`, `variableToList`,
//! `AddvariableToJSON`, `variableFromJSON`.

use super::{Args, check_len, integer_arg, list_index};
use crate::error::Error;
use crate::eval::Interp;
use crate::limits::{Limits, MAX_VALUE_DEPTH};
use crate::value::{Map, Value};

/// `getListLen`
pub(super) fn get_list_len(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
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

/// `itemFromList`
pub(super) fn item_from_list(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let (name, value) = a.source(0)?;
    let Value::List { items, .. } = value else {
        return Err(Error::runtime(format!("itemFromList: '{name}' holds a {}, not a list", value.type_name())));
    };
    let index = integer_arg(a.value(1)?, "itemFromList", "index")?;
    let item = list_index(items, index).ok_or_else(|| {
        Error::runtime(format!("itemFromList: index {index} is out of range for '{name}' (length {})", items.len()))
    })?;
    let item = item.clone();
    interp.set_var(a.target(2)?, item);
    Ok(())
}

/// `variableToList`
pub(super) fn variable_to_list(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
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

/// `AddvariableToJSON`
pub(super) fn add_variable_to_json(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
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

fn not_a_dict(name: &str) -> Error {
    Error::runtime(format!("variableFromJSON: '{name}' holds text that is not a dict (JSON or AVAP literal syntax)"))
}

/// `variableFromJSON`
pub(super) fn variable_from_json(interp: &mut Interp<'_>, a: &Args) -> Result<(), Error> {
    let (name, source) = a.source(0)?;
    let key = interp.text(a.value(1)?)?;
    let value = match source {
        Value::Null => Value::Null,
        Value::Dict { map, .. } => map.get(&key).cloned().unwrap_or(Value::Null),
        // JSON: only the value read is converted (and held to the depth).
        Value::Str(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(mut obj)) => match obj.remove(&key) {
                Some(v) => Value::from_json(v).map_err(|_| Limits::value_depth_error())?,
                None => Value::Null,
            },
            Ok(_) => return Err(not_a_dict(name)),
            Err(_) => match crate::value::data_from_text(text) {
                Some(Ok(Value::Dict { map, .. })) => map.get(&key).cloned().unwrap_or(Value::Null),
                Some(Err(_)) => return Err(Limits::value_depth_error()),
                _ => return Err(not_a_dict(name)),
            },
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
