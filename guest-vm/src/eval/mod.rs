//! Evaluator: walks a [`Program`] against one request. This file holds the
//! entry points and the interpreter state (variables, budgets, logs);
//! statements are in `stmt.rs`, calls in `call.rs`, expressions in
//! `expr.rs`.
//!
//! Native recursion is bounded: expressions and blocks are bounded by the
//! parser (`MAX_EXPR_DEPTH`, `MAX_BLOCK_DEPTH`), user-function calls by
//! `max_call_depth` (clamped to `HARD_MAX_CALL_DEPTH`), values by
//! `MAX_VALUE_DEPTH`. Every statement and expression node costs one step of
//! `max_steps`.

mod call;
mod expr;
mod stmt;

use std::borrow::Cow;

use serde::Serialize;

use crate::ast::{Program, ValueArg};
use crate::catalog::Catalog;
use crate::commands::short;
use crate::error::Error;
use crate::host::{Host, NoHost};
use crate::limits::{Limits, MAX_EVAL_DEPTH, MAX_VALUE_DEPTH};
use crate::value::{Map, Value};

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

/// How a block ended.
enum Flow {
    Normal,
    Return(Value),
}

pub(crate) struct Interp<'p> {
    pub(crate) limits: Limits,
    /// Serves the capability commands (`commands/outside.rs`).
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

    /// Enters one level of native recursion (blocks, expressions, calls).
    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= MAX_EVAL_DEPTH {
            return Err(Error::limit("max_eval_depth", MAX_EVAL_DEPTH));
        }
        self.depth += 1;
        Ok(())
    }
}
