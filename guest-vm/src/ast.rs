//! The syntax tree produced by the parser and walked by the evaluator.

use std::collections::HashMap;
use std::rc::Rc;

use crate::builtins::{self, Builtin};
pub use crate::tokenizer::TemplatePart;

/// A parsed script: the top-level statements and the (hoisted) functions.
#[derive(Debug, Clone)]
pub struct Program {
    pub main: Block,
    pub functions: HashMap<String, Function>,
}

pub type Block = Vec<Stmt>;

/// A user function (`function name(a, b) { ... }`).
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub params: Vec<String>,
    pub body: Block,
    pub line: usize,
}

/// One statement and the line it came from.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub line: usize,
    pub kind: StmtKind,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `x = expr`
    Assign { name: String, value: Expr },
    /// A catalog (non-control) command, arguments already matched to its
    /// parameters (the target of `x = Cmd(...)` is merged in).
    Command { builtin: Builtin, args: Vec<CmdArg> },
    /// `f(a, b)` where `f` is a user function (result discarded).
    CallFunction { name: String, args: Vec<Expr> },
    /// `name(...)` where `name` is neither a built-in command nor a function
    /// of the same source: resolved at run time against the catalog (an
    /// AVAP catalog command, an unsupported catalog entry, or the runtime
    /// error `command 'name' not found`). Arguments follow the value rules.
    External { name: String, args: Vec<ValueArg> },
    /// `if(left, right, comparator)` ... `else()` ... `end()`
    If { left: ValueArg, right: ValueArg, comparator: ValueArg, then_block: Block, else_block: Block },
    /// `startLoop(var, from, to)` ... `endLoop()`
    Loop { var: String, from: ValueArg, to: ValueArg, body: Block },
    /// `while(condition)` ... `end()` (or `endLoop()`): the body runs while
    /// the condition, evaluated before each round, is truthy.
    While { cond: Expr, body: Block },
    /// `try()` ... `[x =] exception([err])` ... `end()`
    Try { body: Block, err_var: Option<String>, target: Option<String>, handler: Block },
    /// `return [expr]` (only inside functions)
    Return(Option<Expr>),
}

/// A command argument matched to its parameter kind.
#[derive(Debug, Clone)]
pub enum CmdArg {
    /// Kind T: the name of the variable to write.
    Target(String),
    /// Kind S: the name of the variable to read.
    Source(String),
    /// Kind V.
    Value(ValueArg),
}

/// A value argument, before it is read.
#[derive(Debug, Clone)]
pub enum ValueArg {
    /// An empty argument: reads as the empty string.
    Empty,
    /// A bare word: the variable's value if it exists, else the word as text.
    Word(String),
    /// Text that is not an expression (e.g. `=` or `%Y-%m-%d`): itself.
    Raw(String),
    /// An expression (including literals): evaluated.
    Expr(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Template(Vec<TemplatePart>),
    Name(String),
    List(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Neg(Box<Expr>),
    Pos(Box<Expr>),
    Not(Box<Expr>),
    /// A left-associative chain of same-precedence operators (`a + b - c`),
    /// kept flat so long chains do not deepen the tree.
    Chain {
        first: Box<Expr>,
        rest: Vec<(BinOp, Expr)>,
    },
    /// `a ** b` (right-associative).
    Pow(Box<Expr>, Box<Expr>),
    /// `a < b <= c` (chained as in Python).
    Compare {
        first: Box<Expr>,
        rest: Vec<(CmpOp, Expr)>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Call {
        name: String,
        args: Vec<Expr>,
    },
}

impl Program {
    /// Every command name the program calls (built-in commands, catalog or
    /// unknown names, in statements and in expressions), not counting
    /// control flow, the program's own functions and the expression
    /// built-ins (`str`, `int`, ...).
    /// Sorted and deduplicated.
    pub fn called_commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        let own = |n: &str| self.functions.contains_key(n);
        collect_block(&self.main, &own, &mut out);
        for f in self.functions.values() {
            collect_block(&f.body, &own, &mut out);
        }
        out
    }
}

fn collect_block(block: &[Stmt], own: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
    for stmt in block {
        match &stmt.kind {
            StmtKind::Assign { value, .. } => collect_expr(value, own, out),
            StmtKind::Command { builtin, args } => {
                insert_sorted(out, builtin.name().to_string());
                for a in args {
                    if let CmdArg::Value(v) = a {
                        collect_value(v, own, out);
                    }
                }
            }
            StmtKind::CallFunction { name, args } => {
                if !own(name) {
                    insert_sorted(out, name.clone());
                }
                args.iter().for_each(|e| collect_expr(e, own, out));
            }
            StmtKind::External { name, args } => {
                insert_sorted(out, name.clone());
                args.iter().for_each(|v| collect_value(v, own, out));
            }
            StmtKind::If { left, right, comparator, then_block, else_block } => {
                for v in [left, right, comparator] {
                    collect_value(v, own, out);
                }
                collect_block(then_block, own, out);
                collect_block(else_block, own, out);
            }
            StmtKind::Loop { from, to, body, .. } => {
                collect_value(from, own, out);
                collect_value(to, own, out);
                collect_block(body, own, out);
            }
            StmtKind::While { cond, body } => {
                collect_expr(cond, own, out);
                collect_block(body, own, out);
            }
            StmtKind::Try { body, handler, .. } => {
                collect_block(body, own, out);
                collect_block(handler, own, out);
            }
            StmtKind::Return(Some(e)) => collect_expr(e, own, out),
            StmtKind::Return(None) => {}
        }
    }
}

fn collect_value(v: &ValueArg, own: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
    if let ValueArg::Expr(e) = v {
        collect_expr(e, own, out);
    }
}

/// Recursion is bounded by the parser's `MAX_EXPR_DEPTH`.
fn collect_expr(e: &Expr, own: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
    match e {
        Expr::Null
        | Expr::Bool(_)
        | Expr::Int(_)
        | Expr::Float(_)
        | Expr::Str(_)
        | Expr::Template(_)
        | Expr::Name(_) => {}
        Expr::List(items) | Expr::And(items) | Expr::Or(items) => {
            items.iter().for_each(|i| collect_expr(i, own, out));
        }
        Expr::Dict(pairs) => {
            for (k, v) in pairs {
                collect_expr(k, own, out);
                collect_expr(v, own, out);
            }
        }
        Expr::Neg(x) | Expr::Pos(x) | Expr::Not(x) => collect_expr(x, own, out),
        Expr::Chain { first, rest } => {
            collect_expr(first, own, out);
            rest.iter().for_each(|(_, x)| collect_expr(x, own, out));
        }
        Expr::Compare { first, rest } => {
            collect_expr(first, own, out);
            rest.iter().for_each(|(_, x)| collect_expr(x, own, out));
        }
        Expr::Pow(a, b) | Expr::Index(a, b) => {
            collect_expr(a, own, out);
            collect_expr(b, own, out);
        }
        Expr::Call { name, args } => {
            if !own(name) && !builtins::FUNCTIONS.contains(&name.as_str()) {
                insert_sorted(out, name.clone());
            }
            args.iter().for_each(|a| collect_expr(a, own, out));
        }
    }
}

/// Inserts `name` into a sorted, deduplicated list (binary search, no sort
/// routine: fewer instantiations in the wasm module).
pub(crate) fn insert_sorted(list: &mut Vec<String>, name: String) {
    if let Err(at) = list.binary_search(&name) {
        list.insert(at, name);
    }
}
