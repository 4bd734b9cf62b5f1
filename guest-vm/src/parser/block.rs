//! Phase 2: the parsed lines become blocks (openers matched with their
//! closers) and functions are hoisted.

use std::collections::{HashMap, HashSet};

use super::call::value_arg;
use super::{LineStmt, RawKind};
use crate::ast::{Block, Expr, Function, Program, Stmt, StmtKind, ValueArg};
use crate::error::Diagnostic;
use crate::limits::MAX_BLOCK_DEPTH;

/// Builds the program from the parsed lines; `diags` holds the problems
/// found so far.
pub(super) fn build(lines: Vec<(usize, usize, LineStmt)>, diags: Vec<Diagnostic>) -> Result<Program, Vec<Diagnostic>> {
    let function_names: HashSet<String> = lines
        .iter()
        .filter_map(|(_, _, s)| match s {
            LineStmt::FunctionDef { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut b = Builder { main: Vec::new(), stack: Vec::new(), functions: HashMap::new(), diags, function_names };
    for (line, col, stmt) in lines {
        b.add(line, col, stmt);
    }
    b.finish();
    if b.diags.is_empty() {
        Ok(Program { main: b.main, functions: b.functions })
    } else {
        b.diags.sort_by_key(|d| (d.line, d.column));
        Err(b.diags)
    }
}

/// An open block while building.
enum Frame {
    If {
        line: usize,
        left: ValueArg,
        right: ValueArg,
        comparator: ValueArg,
        then_block: Block,
        else_block: Option<Block>,
    },
    Loop {
        line: usize,
        var: String,
        from: ValueArg,
        to: ValueArg,
        body: Block,
    },
    While {
        line: usize,
        cond: Expr,
        body: Block,
    },
    Try {
        line: usize,
        body: Block,
        handler: Option<(Option<String>, Option<String>, Block)>,
    },
    Function {
        line: usize,
        name: String,
        params: Vec<String>,
        body: Block,
        valid: bool,
    },
}

impl Frame {
    fn block(&mut self) -> &mut Block {
        match self {
            Frame::If { then_block, else_block, .. } => else_block.as_mut().unwrap_or(then_block),
            Frame::Loop { body, .. } | Frame::While { body, .. } => body,
            Frame::Try { body, handler, .. } => match handler {
                Some((_, _, h)) => h,
                None => body,
            },
            Frame::Function { body, .. } => body,
        }
    }

    fn describe(&self) -> String {
        match self {
            Frame::If { line, .. } => format!("if() at line {line} is not closed with end()"),
            Frame::Loop { line, .. } => {
                format!("startLoop() at line {line} is not closed with endLoop()")
            }
            Frame::While { line, .. } => format!("while() at line {line} is not closed with end()"),
            Frame::Try { line, handler: None, .. } => format!("try() at line {line} has no exception() handler"),
            Frame::Try { line, .. } => format!("try() at line {line} is not closed with end()"),
            Frame::Function { line, name, .. } => {
                format!("function '{name}' at line {line} is not closed with '}}'")
            }
        }
    }
}

struct Builder {
    main: Block,
    stack: Vec<Frame>,
    functions: HashMap<String, Function>,
    diags: Vec<Diagnostic>,
    function_names: HashSet<String>,
}

impl Builder {
    fn current(&mut self) -> &mut Block {
        match self.stack.last_mut() {
            Some(f) => f.block(),
            None => &mut self.main,
        }
    }

    fn push(&mut self, line: usize, kind: StmtKind) {
        self.current().push(Stmt { line, kind });
    }

    fn err(&mut self, line: usize, col: usize, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(line, col, msg));
    }

    fn in_function(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Function { .. }))
    }

    fn open(&mut self, line: usize, col: usize, frame: Frame) {
        let depth = self.stack.iter().filter(|f| !matches!(f, Frame::Function { .. })).count();
        if depth >= MAX_BLOCK_DEPTH {
            self.err(line, col, format!("blocks are nested too deeply (limit {MAX_BLOCK_DEPTH})"));
        }
        self.stack.push(frame);
    }

    /// Pops the top frame and attaches the finished statement to its parent.
    fn close_top(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame {
            Frame::If { line, left, right, comparator, then_block, else_block } => self.push(
                line,
                StmtKind::If { left, right, comparator, then_block, else_block: else_block.unwrap_or_default() },
            ),
            Frame::Loop { line, var, from, to, body } => self.push(line, StmtKind::Loop { var, from, to, body }),
            Frame::While { line, cond, body } => self.push(line, StmtKind::While { cond, body }),
            Frame::Try { line, body, handler } => {
                let (err_var, target, handler) = handler.unwrap_or_default();
                self.push(line, StmtKind::Try { body, err_var, target, handler });
            }
            Frame::Function { line, name, params, body, valid } => {
                if !valid {
                    return;
                }
                if self.functions.contains_key(&name) {
                    self.err(line, 1, format!("function '{name}' is defined twice"));
                    return;
                }
                self.functions.insert(name.clone(), Function { name, params, body, line });
            }
        }
    }

    fn add(&mut self, line: usize, col: usize, stmt: LineStmt) {
        match stmt {
            LineStmt::FunctionDef { name, params } => {
                let valid = self.stack.is_empty();
                if !valid {
                    self.err(
                        line,
                        col,
                        "functions can only be defined at the top level (not inside a block or another function)",
                    );
                }
                self.stack.push(Frame::Function { line, name, params, body: Vec::new(), valid });
            }
            LineStmt::CloseBrace => {
                if !self.in_function() {
                    self.err(line, col, "'}' without an open function");
                    return;
                }
                while let Some(top) = self.stack.last() {
                    match top {
                        Frame::Function { .. } => {
                            self.close_top();
                            break;
                        }
                        Frame::Try { handler: Some(_), .. } => self.close_top(),
                        other => {
                            let msg = format!("{} before the '}}' that ends the function", other.describe());
                            self.err(line, col, msg);
                            self.close_top();
                        }
                    }
                }
            }
            LineStmt::Return(e) => {
                if self.in_function() {
                    self.push(line, StmtKind::Return(e));
                } else {
                    self.err(line, col, "'return' is only allowed inside a function");
                }
            }
            LineStmt::Assign { name, value } => self.push(line, StmtKind::Assign { name, value }),
            LineStmt::Command { builtin, args } => self.push(line, StmtKind::Command { builtin, args }),
            LineStmt::Call { name, args } => {
                if self.function_names.contains(&name) {
                    let mut exprs = Vec::with_capacity(args.len());
                    for a in args {
                        match a.kind {
                            RawKind::Word(w) => exprs.push(Expr::Name(w)),
                            RawKind::Expr(e) => exprs.push(e),
                            RawKind::Empty => {
                                self.err(line, a.col, format!("empty argument in the call of '{name}'"));
                                return;
                            }
                            RawKind::Raw(_, d) => {
                                self.diags.push(d);
                                return;
                            }
                        }
                    }
                    self.push(line, StmtKind::CallFunction { name, args: exprs });
                } else {
                    let args = args.into_iter().map(value_arg).collect();
                    self.push(line, StmtKind::External { name, args });
                }
            }
            LineStmt::If { left, right, comparator } => self.open(
                line,
                col,
                Frame::If { line, left, right, comparator, then_block: Vec::new(), else_block: None },
            ),
            LineStmt::Else => match self.stack.last_mut() {
                Some(Frame::If { else_block: else_block @ None, .. }) => *else_block = Some(Vec::new()),
                Some(Frame::If { line: l, .. }) => {
                    let msg = format!("second else() for the if() at line {l}");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "else() without a matching if()"),
            },
            LineStmt::End => match self.stack.last() {
                Some(Frame::If { .. }) | Some(Frame::While { .. }) | Some(Frame::Try { handler: Some(_), .. }) => {
                    self.close_top()
                }
                Some(Frame::Try { line: l, .. }) => {
                    let msg = format!("end() closes the try() at line {l}, which has no exception() handler");
                    self.err(line, col, msg);
                    self.stack.pop();
                }
                Some(Frame::Loop { line: l, .. }) => {
                    let msg = format!("end() cannot close the startLoop() at line {l}; use endLoop()");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "end() without a matching if(), while() or try()"),
            },
            LineStmt::StartLoop { var, from, to } => {
                self.open(line, col, Frame::Loop { line, var, from, to, body: Vec::new() })
            }
            LineStmt::While { cond } => self.open(line, col, Frame::While { line, cond, body: Vec::new() }),
            LineStmt::EndLoop => match self.stack.last() {
                Some(Frame::Loop { .. }) | Some(Frame::While { .. }) => self.close_top(),
                Some(Frame::If { line: l, .. }) => {
                    let msg = format!("endLoop() cannot close the if() at line {l}; use end()");
                    self.err(line, col, msg);
                }
                _ => self.err(line, col, "endLoop() without a matching startLoop()"),
            },
            LineStmt::Try => self.open(line, col, Frame::Try { line, body: Vec::new(), handler: None }),
            LineStmt::Exception { err_var, target } => match self.stack.last_mut() {
                Some(Frame::Try { handler: handler @ None, .. }) => *handler = Some((err_var, target, Vec::new())),
                _ => self.err(line, col, "exception() without a matching try()"),
            },
        }
    }

    fn finish(&mut self) {
        while let Some(top) = self.stack.last() {
            if let Frame::Try { handler: Some(_), .. } = top {
                // A handler may run to the end of the script without end().
                self.close_top();
                continue;
            }
            let line = match top {
                Frame::If { line, .. }
                | Frame::Loop { line, .. }
                | Frame::While { line, .. }
                | Frame::Try { line, .. }
                | Frame::Function { line, .. } => *line,
            };
            let msg = top.describe();
            self.err(line, 1, msg);
            self.stack.pop();
        }
    }
}
