//! Calls: built-in commands (after the catalog check), script functions,
//! catalog commands written in AVAP, and the expression functions.

use super::{Flow, Interp, rt, unsupported};
use crate::ast::{CmdArg, Expr, Function, Program, ValueArg};
use crate::builtins::{self, Builtin, Group};
use crate::catalog::Catalog;
use crate::commands::{self, short};
use crate::error::{Error, ErrorKind};
use crate::value::{Map, Value, float_text, parse_numeric_text};

impl<'p> Interp<'p> {
    pub(super) fn run_command(&mut self, builtin: Builtin, args: &[CmdArg], line: usize) -> Result<(), Error> {
        let start = std::time::Instant::now();
        let name = builtin.name();
        let r = if builtin.group() == Group::Control || self.catalog.allows_command(name) {
            commands::run(self, builtin, args)
        } else if self.catalog.is_unsupported(name) {
            Err(unsupported(name))
        } else {
            Err(rt(format!("command '{name}' not found in the catalog")))
        };
        self.log(name, line, Some(start), r.as_ref().err());
        r
    }

    pub(super) fn call(&mut self, name: &str, args: &[Expr]) -> Result<Value, Error> {
        let program: &'p Program = self.program;
        if !self.in_catalog
            && let Some(f) = program.functions.get(name)
        {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(self.eval(a)?);
            }
            return self.call_function(f, values, false);
        }
        if builtins::FUNCTIONS.contains(&name) {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(self.eval(a)?);
            }
            return self.builtin(name, values);
        }
        if Builtin::from_name(name).is_some() {
            return Err(rt(format!(
                "command '{name}' cannot be used inside an expression; call it on its own line (`x = {name}(...)`)"
            )));
        }
        let Some(f) = self.catalog_function(name)? else {
            return Err(rt(format!("function '{name}' not found")));
        };
        // Catalog commands take their arguments by the value rules: a bare
        // name that is not a variable is its own text.
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(match a {
                Expr::Name(n) if self.get_var(n).is_none() => {
                    self.step()?;
                    Value::str(n.as_str())
                }
                _ => self.eval(a)?,
            });
        }
        self.call_function(f, values, true)
    }

    /// The catalog command written in AVAP called `name`: `Ok(None)` when
    /// the catalog has none, an error when its source is invalid or the
    /// entry is unsupported by this host.
    pub(super) fn catalog_function(&self, name: &str) -> Result<Option<&'p Function>, Error> {
        let catalog: &'p Catalog = self.catalog;
        match catalog.function(name, self.limits.max_script_bytes) {
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(msg)) => Err(rt(msg)),
            None if catalog.is_unsupported(name) => Err(unsupported(name)),
            None => Ok(None),
        }
    }

    /// A statement-level call of a catalog command (value-rule arguments).
    pub(super) fn call_external(&mut self, f: &'p Function, args: &[ValueArg]) -> Result<Value, Error> {
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.resolve_value(a)?);
        }
        self.call_function(f, values, true)
    }

    /// Calls a script function, or (`catalog`) a catalog command. Errors
    /// leaving catalog code for script code name the command and the line
    /// inside its source, and take the line of the calling statement.
    fn call_function(&mut self, f: &'p Function, args: Vec<Value>, catalog: bool) -> Result<Value, Error> {
        if args.len() != f.params.len() {
            return Err(rt(format!(
                "function '{}' expects {} argument{} ({}), got {}",
                f.name,
                f.params.len(),
                if f.params.len() == 1 { "" } else { "s" },
                f.params.join(", "),
                args.len()
            )));
        }
        if self.call_depth >= self.limits.call_depth() {
            return Err(self.limits.call_depth_error());
        }
        let locals: Map = f.params.iter().cloned().zip(args).collect();
        let saved = self.locals.replace(locals);
        let saved_in_catalog = std::mem::replace(&mut self.in_catalog, catalog);
        self.call_depth += 1;
        let mut r = self.exec_block(&f.body);
        self.call_depth -= 1;
        self.locals = saved;
        self.in_catalog = saved_in_catalog;
        if catalog
            && !saved_in_catalog
            && let Err(e) = &mut r
        {
            if e.kind == ErrorKind::Runtime {
                e.message = match e.line {
                    Some(line) => format!("in catalog command '{}', line {line}: {}", f.name, e.message),
                    None => format!("in catalog command '{}': {}", f.name, e.message),
                };
            }
            e.line = None;
        }
        match r? {
            Flow::Return(v) => Ok(v),
            Flow::Normal => Ok(Value::Null),
        }
    }

    fn builtin(&mut self, name: &str, args: Vec<Value>) -> Result<Value, Error> {
        let mut it = args.into_iter();
        let (Some(x), None) = (it.next(), it.next()) else {
            return Err(rt(format!("{name}() takes exactly one argument")));
        };
        match name {
            "str" => {
                let t = self.text(&x)?;
                Ok(Value::str(t))
            }
            "len" => match &x {
                Value::Str(s) => Ok(Value::Int(s.chars().count() as i64)),
                Value::List { items, .. } => Ok(Value::Int(items.len() as i64)),
                Value::Dict { map, .. } => Ok(Value::Int(map.len() as i64)),
                other => Err(rt(format!("len() of a {} is not defined", other.type_name()))),
            },
            "bool" => Ok(Value::Bool(x.truthy())),
            "int" => match &x {
                Value::Int(i) => Ok(Value::Int(*i)),
                Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
                Value::Float(f) => float_to_int(*f),
                Value::Str(s) => match parse_numeric_text(s.trim()) {
                    Some(Value::Int(i)) => Ok(Value::Int(i)),
                    _ => Err(rt(format!("int(): invalid integer text {}", short(&x)))),
                },
                other => Err(rt(format!("int() of a {} is not defined", other.type_name()))),
            },
            "float" => match &x {
                Value::Int(i) => Ok(Value::Float(*i as f64)),
                Value::Bool(b) => Ok(Value::Float(if *b { 1.0 } else { 0.0 })),
                Value::Float(f) => Ok(Value::Float(*f)),
                Value::Str(s) => match parse_numeric_text(s.trim()) {
                    Some(Value::Int(i)) => Ok(Value::Float(i as f64)),
                    Some(Value::Float(f)) => Ok(Value::Float(f)),
                    _ => Err(rt(format!("float(): invalid number text {}", short(&x)))),
                },
                other => Err(rt(format!("float() of a {} is not defined", other.type_name()))),
            },
            _ => Err(rt(format!("function '{name}' not found"))),
        }
    }
}

fn float_to_int(f: f64) -> Result<Value, Error> {
    let t = f.trunc();
    if (-9.223_372_036_854_775e18..=9.223_372_036_854_775e18).contains(&t) {
        Ok(Value::Int(t as i64))
    } else {
        Err(rt(format!("int(): {} is out of range", float_text(f))))
    }
}
