//! Errors and diagnostics.
//!
//! Every error has a [`ErrorKind`]; syntax errors carry one [`Diagnostic`]
//! (line and 1-based column) per problem found, runtime errors carry the line
//! of the statement that failed.

use std::fmt;

use serde::Serialize;

/// One syntax problem, with its 1-based line and column (columns count
/// Unicode scalar values, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Diagnostics listed in one syntax error; past it, one more entry gives
/// the count of the rest.
pub const MAX_DIAGNOSTICS: usize = 100;

impl Diagnostic {
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic { line, column, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// What went wrong, as reported in the output's `kind` field (the ABI's
/// [`avap_abi::ErrorKind`]).
pub use avap_abi::ErrorKind;

/// An error that ends an execution (or, for runtime errors, is caught by a
/// `try()` block).
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    /// One-line message without the line prefix.
    pub message: String,
    /// The line of the statement that failed, when known.
    pub line: Option<usize>,
    /// Every syntax problem (syntax errors only).
    pub diagnostics: Vec<Diagnostic>,
    /// The limit a `limit` error hit, by name (reported as the output's
    /// `limit`).
    pub limit: Option<&'static str>,
}

impl Error {
    pub fn runtime(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Runtime, message: message.into(), line: None, diagnostics: Vec::new(), limit: None }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Input, message: message.into(), line: None, diagnostics: Vec::new(), limit: None }
    }

    /// A limit violation: the message names the limit and its value.
    pub fn limit(name: &'static str, value: impl fmt::Display) -> Self {
        Error {
            kind: ErrorKind::Limit,
            message: format!("limit exceeded: {name} ({value})"),
            line: None,
            diagnostics: Vec::new(),
            limit: Some(name),
        }
    }

    /// All syntax problems of a script; the message summarises the first.
    pub fn syntax(mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.line, d.column));
        let total = diagnostics.len();
        // The first ones are what an author fixes next; the count says the rest.
        if total > MAX_DIAGNOSTICS {
            let last = diagnostics[MAX_DIAGNOSTICS - 1].line;
            diagnostics.truncate(MAX_DIAGNOSTICS);
            diagnostics.push(Diagnostic::new(
                last,
                1,
                format!("... and {} more syntax errors", total - MAX_DIAGNOSTICS),
            ));
        }
        let message = match diagnostics.first() {
            Some(first) if total > 1 => format!("syntax error at {first} (and {} more)", total - 1),
            Some(first) => format!("syntax error at {first}"),
            None => "syntax error".to_string(),
        };
        Error { kind: ErrorKind::Syntax, message, line: diagnostics.first().map(|d| d.line), diagnostics, limit: None }
    }

    /// Whether a `try()` block may catch this error.
    pub fn is_catchable(&self) -> bool {
        self.kind == ErrorKind::Runtime
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.line) {
            (ErrorKind::Runtime | ErrorKind::Limit, Some(line)) => {
                write!(f, "line {line}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}
