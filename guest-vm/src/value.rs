//! The [`Value`] type and its conversion to and from JSON.
//!
//! Strings, lists and dicts are reference-counted, so reading a variable is
//! O(1); mutation goes through `Rc::make_mut` (copy on write). Lists and
//! dicts record their nesting depth so that the evaluator can bound it
//! ([`crate::limits::MAX_VALUE_DEPTH`]) without walking them.

use std::io;
use std::rc::Rc;

use indexmap::IndexMap;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// An insertion-ordered dict (also the script's variable namespace).
pub type Map = IndexMap<String, Value>;

/// A runtime value. Maps one to one onto JSON; `Int` and `Float` stay
/// distinct (`25` vs `25.0`).
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite: the evaluator rejects inf and NaN.
    Float(f64),
    Str(Rc<str>),
    List {
        items: Rc<Vec<Value>>,
        depth: u32,
    },
    Dict {
        map: Rc<Map>,
        depth: u32,
    },
}

impl Value {
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// A list; its depth is one more than its deepest element.
    pub fn list(items: Vec<Value>) -> Value {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        Value::List { items: Rc::new(items), depth }
    }

    pub fn dict(map: Map) -> Value {
        let depth = 1 + map.values().map(Value::depth).max().unwrap_or(0);
        Value::Dict { map: Rc::new(map), depth }
    }

    /// Nesting depth: 0 for scalars, at least 1 for lists and dicts.
    pub fn depth(&self) -> u32 {
        match self {
            Value::List { depth, .. } | Value::Dict { depth, .. } => *depth,
            _ => 0,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List { .. } => "list",
            Value::Dict { .. } => "dict",
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List { items, .. } => !items.is_empty(),
            Value::Dict { map, .. } => !map.is_empty(),
        }
    }

    /// Converts parsed JSON; `Err` when it nests deeper than
    /// [`crate::limits::MAX_VALUE_DEPTH`]. (serde_json itself stops at 128
    /// levels, so this recursion is bounded too.)
    pub fn from_json(json: serde_json::Value) -> Result<Value, TooDeep> {
        Ok(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().filter(|f| f.is_finite()).unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(items) => {
                let items = items.into_iter().map(Value::from_json).collect::<Result<Vec<_>, _>>()?;
                let v = Value::list(items);
                if v.depth() > crate::limits::MAX_VALUE_DEPTH {
                    return Err(TooDeep);
                }
                v
            }
            serde_json::Value::Object(obj) => {
                let map = obj.into_iter().map(|(k, v)| Ok((k, Value::from_json(v)?))).collect::<Result<Map, _>>()?;
                let v = Value::dict(map);
                if v.depth() > crate::limits::MAX_VALUE_DEPTH {
                    return Err(TooDeep);
                }
                v
            }
        })
    }

    /// The value as text: strings as they are, `None`/`True`/`False` for
    /// null and booleans (Python style), floats always with a fraction or
    /// exponent (`25.0`), lists and dicts as compact JSON. `Err` when the
    /// text would exceed `cap` bytes.
    pub fn display(&self, cap: usize) -> Result<String, TooLong> {
        let text = match self {
            Value::Null => "None".to_string(),
            Value::Bool(true) => "True".to_string(),
            Value::Bool(false) => "False".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_text(*f),
            Value::Str(s) => s.to_string(),
            Value::List { .. } | Value::Dict { .. } => {
                let bytes = to_json_capped(self, cap)?;
                String::from_utf8(bytes).map_err(|_| TooLong)?
            }
        };
        if text.len() > cap {
            return Err(TooLong);
        }
        Ok(text)
    }
}

/// A float as text: `25.0`, `0.1`, `1e20`.
pub fn float_text(f: f64) -> String {
    // serde_json's shortest round-trip formatting (also what the JSON
    // output uses), so text and JSON agree.
    match serde_json::Number::from_f64(f) {
        Some(n) => n.to_string(),
        None if f.is_nan() => "nan".to_string(),
        None if f > 0.0 => "inf".to_string(),
        None => "-inf".to_string(),
    }
}

/// JSON nests deeper than a value may ([`crate::limits::MAX_VALUE_DEPTH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep;

/// Produced text or JSON would exceed its byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// A writer that refuses to grow past `cap` bytes, so that serializing a
/// value built from shared pieces can never allocate more than the cap.
/// What a [`CappedWriter`] reserves before the first write.
const INITIAL_OUTPUT_BYTES: usize = 1024;

pub struct CappedWriter {
    pub buf: Vec<u8>,
    cap: usize,
    pub overflowed: bool,
}

impl CappedWriter {
    pub fn new(cap: usize) -> Self {
        // Most outputs are small: one allocation up front instead of a
        // reallocation at every doubling.
        CappedWriter { buf: Vec::with_capacity(cap.min(INITIAL_OUTPUT_BYTES)), cap, overflowed: false }
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.buf.len().saturating_add(data.len()) > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("output cap exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serializes any value as compact JSON, failing when it exceeds `cap` bytes.
pub fn to_json_capped<T: Serialize + ?Sized>(value: &T, cap: usize) -> Result<Vec<u8>, TooLong> {
    let mut w = CappedWriter::new(cap);
    match serde_json::to_writer(&mut w, value) {
        Ok(()) => Ok(w.buf),
        Err(_) => Err(TooLong),
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_none(),
            Value::Str(text) => s.serialize_str(text),
            Value::List { items, .. } => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Dict { map, .. } => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map.iter() {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// Reads numeric text: `-12` is an int (when it fits), `2.5`, `1e3` and
/// `-0.5` are floats. Surrounding white space, `inf`, `nan`, `0x10` or `1_000`
/// are not numeric.
pub fn parse_numeric_text(s: &str) -> Option<Value> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-') | Some(b'+')) {
        i += 1;
    }
    let digits_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = i - digits_start;
    if i == b.len() {
        if int_digits == 0 {
            return None;
        }
        return match s.parse::<i64>() {
            Ok(v) => Some(Value::Int(v)),
            Err(_) => s.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float),
        };
    }
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            frac_digits += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-') | Some(b'+')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float)
}

/// A string made only of ASCII digits, with an optional leading `-`, that
/// fits in an i64 (the `addVar` rule).
pub fn digits_only_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Reads a dict, list or scalar written as text: JSON first, then AVAP
/// literal syntax (LANGUAGE.md, "Dicts and lists written as text"): single
/// or double quotes, `True`/`False`/`None` (and `true`/`false`/`null`),
/// negative numbers, trailing commas as the expression parser allows them.
/// Only literals: a name, call, operator or template makes it not data, so
/// text is never evaluated. `None` when the text is neither; `Err` when it
/// nests deeper than [`crate::limits::MAX_VALUE_DEPTH`].
pub fn data_from_text(text: &str) -> Option<Result<Value, TooDeep>> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        return Some(Value::from_json(json));
    }
    let trimmed = text.trim();
    // Only a bracketed form: a bare word or number stays what it is.
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let expr = crate::parser::parse_expression(trimmed).ok()?;
    literal(&expr).transpose()
}

/// The value of a literal expression; `Ok(None)` for anything else.
fn literal(expr: &crate::ast::Expr) -> Result<Option<Value>, TooDeep> {
    use crate::ast::Expr;
    let value = match expr {
        Expr::Null => Value::Null,
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Int(i) => Value::Int(*i),
        Expr::Float(f) => Value::Float(*f),
        Expr::Str(s) => Value::Str(s.clone()),
        Expr::Neg(inner) => match inner.as_ref() {
            Expr::Int(i) => match i.checked_neg() {
                Some(n) => Value::Int(n),
                None => return Ok(None),
            },
            Expr::Float(f) => Value::Float(-f),
            _ => return Ok(None),
        },
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match literal(item)? {
                    Some(v) => out.push(v),
                    None => return Ok(None),
                }
            }
            Value::list(out)
        }
        Expr::Dict(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = match k {
                    Expr::Str(s) => s.to_string(),
                    Expr::Int(i) => i.to_string(),
                    _ => return Ok(None),
                };
                match literal(v)? {
                    Some(v) => {
                        map.insert(key, v);
                    }
                    None => return Ok(None),
                }
            }
            Value::dict(map)
        }
        _ => return Ok(None),
    };
    if value.depth() > crate::limits::MAX_VALUE_DEPTH {
        return Err(TooDeep);
    }
    Ok(Some(value))
}
