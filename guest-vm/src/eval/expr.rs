//! Expressions: operators, comparisons, deep equality, indexing.

use std::rc::Rc;

use super::{Interp, rt};
use crate::ast::{BinOp, CmpOp, Expr, TemplatePart};
use crate::commands::list_index;
use crate::error::Error;
use crate::value::{Map, Value, parse_numeric_text};

impl Interp<'_> {
    pub(super) fn eval(&mut self, e: &Expr) -> Result<Value, Error> {
        self.enter()?;
        let r = self.eval_inner(e);
        self.depth -= 1;
        r
    }

    fn eval_inner(&mut self, e: &Expr) -> Result<Value, Error> {
        self.step()?;
        match e {
            Expr::Null => Ok(Value::Null),
            Expr::Bool(b) => Ok(Value::Bool(*b)),
            Expr::Int(i) => Ok(Value::Int(*i)),
            Expr::Float(f) => Ok(Value::Float(*f)),
            Expr::Str(s) => Ok(Value::Str(s.clone())),
            Expr::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        TemplatePart::Text(t) => out.push_str(t),
                        TemplatePart::Var(name) => {
                            let v = self.template_var(name)?;
                            let t = self.text(v)?;
                            out.push_str(&t);
                        }
                    }
                    if out.len() > self.limits.max_string_bytes {
                        return Err(self.limits.string_error());
                    }
                }
                Ok(Value::str(out))
            }
            Expr::Name(name) => {
                self.get_var(name).cloned().ok_or_else(|| rt(format!("variable '{name}' is not defined")))
            }
            Expr::List(items) => {
                if items.len() > self.limits.max_collection_len {
                    return Err(self.limits.collection_error());
                }
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                self.make_list(out)
            }
            Expr::Dict(pairs) => {
                let mut map = Map::with_capacity(pairs.len().min(1024));
                for (k, v) in pairs {
                    let key = match self.eval(k)? {
                        Value::Str(s) => s.to_string(),
                        other => {
                            return Err(rt(format!("dict keys must be strings, got {}", other.type_name())));
                        }
                    };
                    let value = self.eval(v)?;
                    map.insert(key, value);
                }
                self.make_dict(map)
            }
            Expr::Neg(x) => match self.eval(x)? {
                Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| rt("integer overflow in unary '-'")),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(rt(format!("bad operand type for unary '-': {}", other.type_name()))),
            },
            Expr::Pos(x) => match self.eval(x)? {
                v @ (Value::Int(_) | Value::Float(_)) => Ok(v),
                other => Err(rt(format!("bad operand type for unary '+': {}", other.type_name()))),
            },
            Expr::Not(x) => Ok(Value::Bool(!self.eval(x)?.truthy())),
            Expr::Chain { first, rest } => {
                let mut acc = self.eval(first)?;
                for (op, rhs) in rest {
                    let r = self.eval(rhs)?;
                    acc = self.binop(*op, acc, r)?;
                }
                Ok(acc)
            }
            Expr::Pow(a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.binop(BinOp::Pow, a, b)
            }
            Expr::Compare { first, rest } => {
                let mut left = self.eval(first)?;
                for (op, rhs) in rest {
                    let right = self.eval(rhs)?;
                    if !self.compare(*op, &left, &right)? {
                        return Ok(Value::Bool(false));
                    }
                    left = right;
                }
                Ok(Value::Bool(true))
            }
            Expr::And(items) => {
                let mut last = Value::Bool(true);
                for i in items {
                    last = self.eval(i)?;
                    if !last.truthy() {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            Expr::Or(items) => {
                let mut last = Value::Bool(false);
                for i in items {
                    last = self.eval(i)?;
                    if last.truthy() {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            Expr::Index(base, idx) => {
                let base = self.eval(base)?;
                let idx = self.eval(idx)?;
                index(&base, &idx)
            }
            Expr::Call { name, args } => self.call(name, args),
        }
    }

    fn binop(&self, op: BinOp, a: Value, b: Value) -> Result<Value, Error> {
        use Value::{Float, Int, List, Str};
        let sym = op_symbol(op);
        let type_err = |a: &Value, b: &Value| {
            let hint = if op == BinOp::Add && (matches!(a, Str(_)) || matches!(b, Str(_))) {
                " (use str(x) to join text and numbers)"
            } else {
                ""
            };
            rt(format!("unsupported operand types for {sym}: {} and {}{hint}", a.type_name(), b.type_name()))
        };
        let overflow = || rt(format!("integer overflow in '{sym}'"));
        let result = match (op, &a, &b) {
            (BinOp::Add, Str(x), Str(y)) => {
                if x.len().saturating_add(y.len()) > self.limits.max_string_bytes {
                    return Err(self.limits.string_error());
                }
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                return self.make_str(s);
            }
            (BinOp::Add, List { items: x, .. }, List { items: y, .. }) => {
                if x.len().saturating_add(y.len()) > self.limits.max_collection_len {
                    return Err(self.limits.collection_error());
                }
                let mut v = Vec::with_capacity(x.len() + y.len());
                v.extend(x.iter().cloned());
                v.extend(y.iter().cloned());
                return Ok(Value::list(v));
            }
            (_, Int(x), Int(y)) => {
                let (x, y) = (*x, *y);
                match op {
                    BinOp::Add => Int(x.checked_add(y).ok_or_else(overflow)?),
                    BinOp::Sub => Int(x.checked_sub(y).ok_or_else(overflow)?),
                    BinOp::Mul => Int(x.checked_mul(y).ok_or_else(overflow)?),
                    BinOp::Div => {
                        if y == 0 {
                            return Err(rt("division by zero"));
                        }
                        Float(x as f64 / y as f64)
                    }
                    BinOp::FloorDiv => {
                        if y == 0 {
                            return Err(rt("division by zero"));
                        }
                        let q = x.checked_div(y).ok_or_else(overflow)?;
                        let r = x.checked_rem(y).ok_or_else(overflow)?;
                        Int(if r != 0 && ((r < 0) != (y < 0)) { q - 1 } else { q })
                    }
                    BinOp::Mod => {
                        if y == 0 {
                            return Err(rt("modulo by zero"));
                        }
                        let r = x.checked_rem(y).ok_or_else(overflow)?;
                        Int(if r != 0 && ((r < 0) != (y < 0)) { r + y } else { r })
                    }
                    BinOp::Pow => {
                        if y >= 0 {
                            let e = u32::try_from(y).map_err(|_| overflow())?;
                            Int(x.checked_pow(e).ok_or_else(overflow)?)
                        } else {
                            if x == 0 {
                                return Err(rt("0 cannot be raised to a negative power"));
                            }
                            Float((x as f64).powf(y as f64))
                        }
                    }
                }
            }
            (_, Int(_) | Float(_), Int(_) | Float(_)) => {
                let x = num_f64(&a);
                let y = num_f64(&b);
                let r = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => {
                        if y == 0.0 {
                            return Err(rt("division by zero"));
                        }
                        x / y
                    }
                    BinOp::FloorDiv => {
                        if y == 0.0 {
                            return Err(rt("division by zero"));
                        }
                        (x / y).floor()
                    }
                    BinOp::Mod => {
                        if y == 0.0 {
                            return Err(rt("modulo by zero"));
                        }
                        let r = x % y;
                        if r != 0.0 && ((r < 0.0) != (y < 0.0)) { r + y } else { r }
                    }
                    BinOp::Pow => {
                        if x == 0.0 && y < 0.0 {
                            return Err(rt("0 cannot be raised to a negative power"));
                        }
                        x.powf(y)
                    }
                };
                Float(r)
            }
            _ => return Err(type_err(&a, &b)),
        };
        if let Float(f) = result
            && !f.is_finite()
        {
            return Err(rt(format!("the result of '{sym}' is not a finite number")));
        }
        Ok(result)
    }

    /// Expression comparison (`==` is deep equality, ints equal floats of the
    /// same value; ordering is defined for numbers and for strings).
    fn compare(&mut self, op: CmpOp, a: &Value, b: &Value) -> Result<bool, Error> {
        match op {
            CmpOp::Eq => self.equal(a, b),
            CmpOp::Ne => Ok(!self.equal(a, b)?),
            _ => {
                let ord = match (a, b) {
                    (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                    _ => match (as_num(a), as_num(b)) {
                        (Some(x), Some(y)) => compare_numbers(x, y),
                        _ => {
                            return Err(rt(format!(
                                "'{}' is not supported between {} and {}",
                                cmp_symbol(op),
                                a.type_name(),
                                b.type_name()
                            )));
                        }
                    },
                };
                Ok(apply_cmp(op, ord))
            }
        }
    }

    /// Deep equality; every element compared costs a step, so comparing
    /// values built from shared pieces stays within `max_steps`.
    fn equal(&mut self, a: &Value, b: &Value) -> Result<bool, Error> {
        self.step()?;
        self.enter()?;
        let r = self.equal_inner(a, b);
        self.depth -= 1;
        r
    }

    fn equal_inner(&mut self, a: &Value, b: &Value) -> Result<bool, Error> {
        Ok(match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Str(x), Value::Str(y)) => x == y,
            (Value::List { items: x, .. }, Value::List { items: y, .. }) => {
                if Rc::ptr_eq(x, y) {
                    return Ok(true);
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if !self.equal(p, q)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Dict { map: x, .. }, Value::Dict { map: y, .. }) => {
                if Rc::ptr_eq(x, y) {
                    return Ok(true);
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (k, p) in x.iter() {
                    let Some(q) = y.get(k) else {
                        return Ok(false);
                    };
                    if !self.equal(p, q)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => match (as_num(a), as_num(b)) {
                (Some(x), Some(y)) => compare_numbers(x, y) == Some(std::cmp::Ordering::Equal),
                _ => false,
            },
        })
    }
}

fn op_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
    }
}

fn cmp_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Gt => ">",
        CmpOp::Le => "<=",
        CmpOp::Ge => ">=",
    }
}

#[derive(Clone, Copy)]
pub(super) enum Num {
    I(i64),
    F(f64),
}

/// A number value (ints and floats only).
fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Int(i) => Some(Num::I(*i)),
        Value::Float(f) => Some(Num::F(*f)),
        _ => None,
    }
}

/// A value read as a number for `if()`: numbers and numeric text.
pub(super) fn as_number(v: &Value) -> Option<Num> {
    match v {
        Value::Str(s) => as_num(&parse_numeric_text(s.trim())?),
        other => as_num(other),
    }
}

fn num_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

pub(super) fn compare_numbers(a: Num, b: Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::I(x), Num::F(y)) => (x as f64).partial_cmp(&y),
        (Num::F(x), Num::I(y)) => x.partial_cmp(&(y as f64)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
    }
}

pub(super) fn apply_cmp(op: CmpOp, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (op, ord) {
        (_, None) => op == CmpOp::Ne,
        (CmpOp::Eq, Some(o)) => o == Equal,
        (CmpOp::Ne, Some(o)) => o != Equal,
        (CmpOp::Lt, Some(o)) => o == Less,
        (CmpOp::Gt, Some(o)) => o == Greater,
        (CmpOp::Le, Some(o)) => o != Greater,
        (CmpOp::Ge, Some(o)) => o != Less,
    }
}

fn index(base: &Value, idx: &Value) -> Result<Value, Error> {
    match (base, idx) {
        (Value::List { items, .. }, Value::Int(i)) => list_index(items, *i)
            .cloned()
            .ok_or_else(|| rt(format!("list index {i} is out of range (length {})", items.len()))),
        (Value::Str(s), Value::Int(i)) => {
            let n = s.chars().count() as i64;
            let k = if *i < 0 { n.checked_add(*i) } else { Some(*i) };
            k.filter(|k| *k >= 0)
                .and_then(|k| s.chars().nth(usize::try_from(k).ok()?))
                .map(|c| Value::str(c.to_string()))
                .ok_or_else(|| rt(format!("string index {i} is out of range (length {n})")))
        }
        (Value::Dict { map, .. }, Value::Str(k)) => {
            map.get(&**k).cloned().ok_or_else(|| rt(format!("key '{k}' not found in dict")))
        }
        (Value::List { .. } | Value::Str(_), other) => {
            Err(rt(format!("indexes must be integers, got {}", other.type_name())))
        }
        (Value::Dict { .. }, other) => Err(rt(format!("dict keys must be strings, got {}", other.type_name()))),
        (other, _) => Err(rt(format!("a {} cannot be indexed", other.type_name()))),
    }
}
