//! Evaluator: walks a [`Program`] against one request.
//!
//! Native recursion is bounded: expressions and blocks are bounded by the
//! parser (`MAX_EXPR_DEPTH`, `MAX_BLOCK_DEPTH`), user-function calls by
//! `max_call_depth` (clamped to `HARD_MAX_CALL_DEPTH`), values by
//! `MAX_VALUE_DEPTH`. Every statement and expression node costs one step of
//! `max_steps`.

use std::borrow::Cow;
use std::rc::Rc;

use serde::Serialize;

use crate::ast::{BinOp, CmpOp, Expr, Function, Program, Stmt, StmtKind, TemplatePart, ValueArg};
use crate::builtins::{self, Builtin, Group};
use crate::catalog::Catalog;
use crate::commands::{self, integer_arg, list_index, short};
use crate::error::{Error, ErrorKind};
use crate::host::{Host, NoHost};
use crate::limits::{Limits, MAX_EVAL_DEPTH, MAX_VALUE_DEPTH};
use crate::value::{Map, Value, float_text, parse_numeric_text};

/// The request a script runs against.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Seeds the script's variables.
    pub variables: Map,
    /// Query-string pairs in order.
    pub query: Vec<(String, String)>,
    /// The request body's top-level keys.
    pub body: Map,
}

/// One log entry per command executed.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub command: Cow<'static, str>,
    pub line: usize,
    pub duration_ms: f64,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A successful execution.
#[derive(Debug, Clone)]
pub struct Success {
    pub status: u16,
    pub result: Map,
    pub variables: Map,
}

/// The outcome of [`execute`], with the logs of both cases.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<Success, Error>,
    pub logs: Vec<LogEntry>,
    pub logs_truncated: bool,
}

/// Runs a parsed program with every built-in command available.
pub fn execute(program: &Program, request: &Request, limits: &Limits) -> Outcome {
    execute_with_catalog(program, request, limits, &Catalog::default())
}

/// Runs a parsed program against a catalog (see [`crate::catalog`]), with
/// no host: capability commands fail with a catchable error.
pub fn execute_with_catalog(program: &Program, request: &Request, limits: &Limits, catalog: &Catalog) -> Outcome {
    execute_with_host(program, request, limits, catalog, &mut NoHost)
}

/// Runs a parsed program against a catalog, with `host` serving the
/// capability commands.
pub fn execute_with_host(
    program: &Program,
    request: &Request,
    limits: &Limits,
    catalog: &Catalog,
    host: &mut dyn Host,
) -> Outcome {
    let mut interp = Interp {
        host,
        limits: limits.clone(),
        program,
        catalog,
        in_catalog: false,
        request,
        globals: request.variables.clone(),
        locals: None,
        results: Map::new(),
        logs: Vec::new(),
        logs_truncated: false,
        steps: 0,
        loop_iterations: 0,
        call_depth: 0,
        depth: 0,
    };
    let run = interp.exec_block(&program.main);
    let result = match run {
        Ok(_) => interp.status().map(|status| Success {
            status,
            result: std::mem::take(&mut interp.results),
            variables: std::mem::take(&mut interp.globals),
        }),
        Err(e) => Err(e),
    };
    Outcome { result, logs: interp.logs, logs_truncated: interp.logs_truncated }
}

enum Flow {
    Normal,
    Return(Value),
}

pub(crate) struct Interp<'p> {
    pub(crate) limits: Limits,
    /// Serves the capability commands (`outside.rs`).
    pub(crate) host: &'p mut dyn Host,
    program: &'p Program,
    catalog: &'p Catalog,
    /// Whether the running code is a catalog function's (which sees the
    /// catalog, not the script's functions).
    in_catalog: bool,
    pub(crate) request: &'p Request,
    globals: Map,
    /// The current function call's parameters (None at top level).
    locals: Option<Map>,
    pub(crate) results: Map,
    logs: Vec<LogEntry>,
    logs_truncated: bool,
    steps: u64,
    loop_iterations: u64,
    call_depth: u32,
    /// Native recursion depth (see [`MAX_EVAL_DEPTH`]).
    depth: u32,
}

fn rt(msg: impl Into<String>) -> Error {
    Error::runtime(msg)
}

fn unsupported(name: &str) -> Error {
    rt(format!("command '{name}' is not supported by this host (catalog type 'function')"))
}

impl<'p> Interp<'p> {
    // ---- variables -------------------------------------------------------

    /// Reads a variable: the current call's locals first, then the script's.
    pub(crate) fn get_var(&self, name: &str) -> Option<&Value> {
        self.locals.as_ref().and_then(|l| l.get(name)).or_else(|| self.globals.get(name))
    }

    /// The value of a template's `${name}` part (missing is an error).
    pub(crate) fn template_var(&self, name: &str) -> Result<&Value, Error> {
        self.get_var(name).ok_or_else(|| rt(format!("template variable '{name}' is not defined")))
    }

    /// Writes a variable: a parameter of the current call if `name` is one,
    /// otherwise the script's namespace.
    pub(crate) fn set_var(&mut self, name: &str, value: Value) {
        if let Some(locals) = self.locals.as_mut()
            && let Some(slot) = locals.get_mut(name)
        {
            *slot = value;
            return;
        }
        self.globals.insert(name.to_string(), value);
    }

    pub(crate) fn var_mut(&mut self, name: &str) -> Option<&mut Value> {
        if let Some(locals) = self.locals.as_mut()
            && locals.contains_key(name)
        {
            return locals.get_mut(name);
        }
        self.globals.get_mut(name)
    }

    /// The value as text, within `max_string_bytes`.
    pub(crate) fn text(&self, value: &Value) -> Result<String, Error> {
        value.display(self.limits.max_string_bytes).map_err(|_| self.limits.string_error())
    }

    fn make_str(&self, s: String) -> Result<Value, Error> {
        if s.len() > self.limits.max_string_bytes {
            return Err(self.limits.string_error());
        }
        Ok(Value::str(s))
    }

    fn make_list(&self, items: Vec<Value>) -> Result<Value, Error> {
        if items.len() > self.limits.max_collection_len {
            return Err(self.limits.collection_error());
        }
        if items.iter().any(|v| v.depth() >= MAX_VALUE_DEPTH) {
            return Err(Limits::value_depth_error());
        }
        Ok(Value::list(items))
    }

    fn make_dict(&self, map: Map) -> Result<Value, Error> {
        if map.len() > self.limits.max_collection_len {
            return Err(self.limits.collection_error());
        }
        if map.values().any(|v| v.depth() >= MAX_VALUE_DEPTH) {
            return Err(Limits::value_depth_error());
        }
        Ok(Value::dict(map))
    }

    /// Reads a value argument (kind V): empty is "", a bare word is the
    /// variable if it exists else the word, raw text is itself.
    pub(crate) fn resolve_value(&mut self, arg: &ValueArg) -> Result<Value, Error> {
        match arg {
            ValueArg::Empty => Ok(Value::str("")),
            ValueArg::Word(w) => Ok(self.get_var(w).cloned().unwrap_or_else(|| Value::str(w.as_str()))),
            ValueArg::Raw(t) => Ok(Value::str(t.as_str())),
            ValueArg::Expr(e) => self.eval(e),
        }
    }

    // ---- budgets ---------------------------------------------------------

    fn step(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(self.limits.steps_error());
        }
        Ok(())
    }

    fn log(
        &mut self,
        command: impl Into<Cow<'static, str>>,
        line: usize,
        start: Option<std::time::Instant>,
        error: Option<&Error>,
    ) {
        if self.logs.len() >= self.limits.max_log_entries {
            self.logs_truncated = true;
            return;
        }
        // Microsecond precision: the clock is not finer than that in any useful way.
        let duration_ms = start.map_or(0.0, |s| s.elapsed().as_micros() as f64 / 1000.0);
        self.logs.push(LogEntry {
            command: command.into(),
            line,
            duration_ms,
            success: error.is_none(),
            error: error.map(|e| e.message.clone()),
        });
    }

    fn status(&self) -> Result<u16, Error> {
        let Some(v) = self.globals.get("_status") else {
            return Ok(200);
        };
        let n = match v {
            Value::Int(i) => Some(*i),
            Value::Str(s) => crate::value::digits_only_int(s),
            _ => None,
        };
        match n {
            Some(n) if u16::try_from(n).is_ok_and(avap_abi::is_script_status) => Ok(n as u16),
            _ => Err(rt(format!(
                "_status must be an integer from {} to {}, got {} {}",
                avap_abi::MIN_SCRIPT_STATUS,
                avap_abi::MAX_SCRIPT_STATUS,
                v.type_name(),
                short(v)
            ))),
        }
    }

    // ---- statements ------------------------------------------------------

    /// Enters one level of native recursion (blocks, expressions, calls).
    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= MAX_EVAL_DEPTH {
            return Err(Error::limit("max_eval_depth", MAX_EVAL_DEPTH));
        }
        self.depth += 1;
        Ok(())
    }

    fn exec_block(&mut self, block: &[Stmt]) -> Result<Flow, Error> {
        self.enter()?;
        let r = self.exec_block_inner(block);
        self.depth -= 1;
        r
    }

    fn exec_block_inner(&mut self, block: &[Stmt]) -> Result<Flow, Error> {
        for stmt in block {
            match self.exec_stmt(stmt) {
                Ok(Flow::Normal) => {}
                Ok(flow) => return Ok(flow),
                Err(mut e) => {
                    if e.line.is_none() {
                        e.line = Some(stmt.line);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn exec_stmt(&mut self, stmt: &Stmt) -> Result<Flow, Error> {
        self.step()?;
        match &stmt.kind {
            StmtKind::Assign { name, value } => {
                let v = self.eval(value)?;
                self.set_var(name, v);
                Ok(Flow::Normal)
            }
            StmtKind::Command { builtin, args } => {
                self.run_command(*builtin, args, stmt.line)?;
                Ok(Flow::Normal)
            }
            StmtKind::CallFunction { name, args } => {
                self.call(name, args)?;
                Ok(Flow::Normal)
            }
            StmtKind::External { name, args } => {
                let f = match self.catalog_function(name) {
                    Ok(Some(f)) => f,
                    Ok(None) => return Err(rt(format!("command '{name}' not found"))),
                    Err(e) => {
                        self.log(name.clone(), stmt.line, None, Some(&e));
                        return Err(e);
                    }
                };
                let start = std::time::Instant::now();
                let r = self.call_external(f, args);
                self.log(name.clone(), stmt.line, Some(start), r.as_ref().err());
                r.map(|_| Flow::Normal)
            }
            StmtKind::If { left, right, comparator, then_block, else_block } => {
                let start = std::time::Instant::now();
                let decided = self.decide_if(left, right, comparator);
                self.log("if", stmt.line, Some(start), decided.as_ref().err());
                if decided? { self.exec_block(then_block) } else { self.exec_block(else_block) }
            }
            StmtKind::Loop { var, from, to, body } => {
                let start = std::time::Instant::now();
                let bounds = self.loop_bounds(from, to);
                self.log("startLoop", stmt.line, Some(start), bounds.as_ref().err());
                let (from, to) = bounds?;
                if from > to {
                    return Ok(Flow::Normal);
                }
                let mut i = from;
                loop {
                    self.loop_iterations += 1;
                    if self.loop_iterations > self.limits.max_loop_iterations {
                        return Err(self.limits.loop_error());
                    }
                    self.set_var(var, Value::Int(i));
                    if let Flow::Return(v) = self.exec_block(body)? {
                        return Ok(Flow::Return(v));
                    }
                    if i >= to {
                        break;
                    }
                    i += 1;
                }
                Ok(Flow::Normal)
            }
            StmtKind::Try { body, err_var, target, handler } => match self.exec_block(body) {
                Ok(flow) => Ok(flow),
                Err(e) if e.is_catchable() => {
                    let msg = Value::str(e.message.as_str());
                    self.globals.insert("__last_error__".to_string(), msg.clone());
                    if let Some(v) = err_var {
                        self.set_var(v, msg.clone());
                    }
                    if let Some(t) = target {
                        self.set_var(t, msg);
                    }
                    self.exec_block(handler)
                }
                Err(e) => Err(e),
            },
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => self.eval(e)?,
                    None => Value::Null,
                };
                Ok(Flow::Return(v))
            }
        }
    }

    fn run_command(&mut self, builtin: Builtin, args: &[crate::ast::CmdArg], line: usize) -> Result<(), Error> {
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

    fn decide_if(&mut self, left: &ValueArg, right: &ValueArg, comparator: &ValueArg) -> Result<bool, Error> {
        let l = self.resolve_value(left)?;
        let r = self.resolve_value(right)?;
        let c = self.resolve_value(comparator)?;
        let op = match &c {
            Value::Str(s) => s.trim().to_string(),
            other => short(other),
        };
        let cmp = match op.as_str() {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            ">" => CmpOp::Gt,
            "<=" => CmpOp::Le,
            ">=" => CmpOp::Ge,
            _ => {
                return Err(rt(format!("unknown comparator '{op}' (use =, ==, !=, <, >, <=, >=)")));
            }
        };
        let ord = match (as_number(&l), as_number(&r)) {
            (Some(a), Some(b)) => compare_numbers(a, b),
            _ => {
                let a = self.text(&l)?;
                let b = self.text(&r)?;
                Some(a.cmp(&b))
            }
        };
        Ok(apply_cmp(cmp, ord))
    }

    fn loop_bounds(&mut self, from: &ValueArg, to: &ValueArg) -> Result<(i64, i64), Error> {
        let f = self.resolve_value(from)?;
        let t = self.resolve_value(to)?;
        Ok((integer_arg(&f, "startLoop", "from")?, integer_arg(&t, "startLoop", "to")?))
    }

    // ---- calls -----------------------------------------------------------

    fn call(&mut self, name: &str, args: &[Expr]) -> Result<Value, Error> {
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
    fn catalog_function(&self, name: &str) -> Result<Option<&'p Function>, Error> {
        let catalog: &'p Catalog = self.catalog;
        match catalog.function(name, self.limits.max_script_bytes) {
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(msg)) => Err(rt(msg)),
            None if catalog.is_unsupported(name) => Err(unsupported(name)),
            None => Ok(None),
        }
    }

    /// A statement-level call of a catalog command (value-rule arguments).
    fn call_external(&mut self, f: &'p Function, args: &[ValueArg]) -> Result<Value, Error> {
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

    // ---- expressions -----------------------------------------------------

    fn eval(&mut self, e: &Expr) -> Result<Value, Error> {
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

fn float_to_int(f: f64) -> Result<Value, Error> {
    let t = f.trunc();
    if (-9.223_372_036_854_775e18..=9.223_372_036_854_775e18).contains(&t) {
        Ok(Value::Int(t as i64))
    } else {
        Err(rt(format!("int(): {} is out of range", float_text(f))))
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
enum Num {
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
fn as_number(v: &Value) -> Option<Num> {
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

fn compare_numbers(a: Num, b: Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::I(x), Num::F(y)) => (x as f64).partial_cmp(&y),
        (Num::F(x), Num::I(y)) => x.partial_cmp(&(y as f64)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
    }
}

fn apply_cmp(op: CmpOp, ord: Option<std::cmp::Ordering>) -> bool {
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

impl ErrorKind {
    /// The kind as the output's `kind` text.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::Runtime => "runtime",
            ErrorKind::Limit => "limit",
            ErrorKind::Input => "input",
        }
    }
}
