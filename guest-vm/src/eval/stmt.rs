//! Statements and blocks: assignments, commands, calls, `if`, loops,
//! `try`, `return`.

use super::expr::{apply_cmp, as_number, compare_numbers};
use super::{Flow, Interp, rt};
use crate::ast::{CmpOp, Stmt, StmtKind, ValueArg};
use crate::commands::{integer_arg, short};
use crate::error::Error;
use crate::value::Value;

impl Interp<'_> {
    pub(super) fn exec_block(&mut self, block: &[Stmt]) -> Result<Flow, Error> {
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
            StmtKind::While { cond, body } => {
                let start = std::time::Instant::now();
                let mut logged = false;
                loop {
                    // The first condition's time and outcome are the
                    // statement's log entry, as for startLoop's bounds.
                    let holds = self.eval(cond).map(|v| v.truthy());
                    if !logged {
                        self.log("while", stmt.line, Some(start), holds.as_ref().err());
                        logged = true;
                    }
                    if !holds? {
                        return Ok(Flow::Normal);
                    }
                    self.loop_iterations += 1;
                    if self.loop_iterations > self.limits.max_loop_iterations {
                        return Err(self.limits.loop_error());
                    }
                    if let Flow::Return(v) = self.exec_block(body)? {
                        return Ok(Flow::Return(v));
                    }
                }
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
}
