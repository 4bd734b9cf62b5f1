//! The syntax tree produced by the parser and walked by the evaluator.

use std::collections::HashMap;
use std::rc::Rc;

use crate::commands::CommandSpec;

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
    Command { spec: &'static CommandSpec, args: Vec<CmdArg> },
    /// `f(a, b)` where `f` is a user function (result discarded).
    CallFunction { name: String, args: Vec<Expr> },
    /// `name(...)` where `name` is neither a command nor a function: a
    /// runtime error `command 'name' not found`.
    Unknown { name: String },
    /// `if(left, right, comparator)` ... `else()` ... `end()`
    If { left: ValueArg, right: ValueArg, comparator: ValueArg, then_block: Block, else_block: Block },
    /// `startLoop(var, from, to)` ... `endLoop()`
    Loop { var: String, from: ValueArg, to: ValueArg, body: Block },
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

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Text(String),
    Var(String),
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
