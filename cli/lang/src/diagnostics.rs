//! Every problem of one file, with its range: what `avap check` prints
//! (`file:line:col: severity: message`, the source line and a caret) and
//! what the language server publishes.
//!
//! - **Errors** are the interpreter's own syntax diagnostics (the parser the
//!   guest module runs, natively), and the script-size limit the host
//!   enforces. A script with an error is refused by the host with
//!   `syntax_error` and never runs.
//! - **Warnings** are calls the host would answer with `command 'name' not
//!   found` at run time: a statement calling a name that is neither a
//!   standard command, a function of the script, nor a command of the
//!   catalog given (`--catalog`). They do not fail `avap check`: a fleet's
//!   catalog may hold commands this machine does not know.
//!
//! Lines and columns are 1-based and count Unicode scalar values, as the
//! interpreter reports them; `end_column` is exclusive.

use avap_guest_vm::ast::{Block, StmtKind};
use avap_guest_vm::{Limits, parser};
use serde::Serialize;

use crate::reference::Commands;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem: where it is, how bad, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diag {
    pub severity: Severity,
    pub line: usize,
    pub column: usize,
    /// Exclusive; on the same line. At least `column + 1`.
    pub end_column: usize,
    pub message: String,
}

/// Every problem of `source`, sorted by position.
pub fn diagnose(source: &str, commands: &Commands) -> Vec<Diag> {
    let lines: Vec<&str> = source.split('\n').collect();
    let max = Limits::default().max_script_bytes;
    if source.len() > max {
        return vec![Diag {
            severity: Severity::Error,
            line: 1,
            column: 1,
            end_column: 2,
            message: format!("limit exceeded: max_script_bytes ({max}); the host refuses this script"),
        }];
    }
    let mut out = match parser::parse(source) {
        Err(diags) => diags
            .into_iter()
            .map(|d| {
                let end_column = word_end(lines.get(d.line.wrapping_sub(1)).copied().unwrap_or(""), d.column);
                Diag { severity: Severity::Error, line: d.line, column: d.column, end_column, message: d.message }
            })
            .collect(),
        Ok(program) => {
            let mut out = Vec::new();
            let own = |name: &str| program.functions.contains_key(name);
            let mut unknown = |line: usize, name: &str| {
                if own(name) || commands.get(name).is_some() {
                    return;
                }
                let text = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
                let column = find_call(text, name).unwrap_or(1);
                out.push(Diag {
                    severity: Severity::Warning,
                    line,
                    column,
                    end_column: column + name.chars().count(),
                    message: format!(
                        "'{name}' is not a standard command, a function of this script or a command of the catalog given; \
                         a host without it answers: command '{name}' not found"
                    ),
                });
            };
            walk(&program.main, &mut unknown);
            for function in program.functions.values() {
                walk(&function.body, &mut unknown);
            }
            out
        }
    };
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn walk(block: &Block, f: &mut dyn FnMut(usize, &str)) {
    for stmt in block {
        match &stmt.kind {
            StmtKind::External { name, .. } => f(stmt.line, name),
            StmtKind::If { then_block, else_block, .. } => {
                walk(then_block, f);
                walk(else_block, f);
            }
            StmtKind::Loop { body, .. } | StmtKind::While { body, .. } => walk(body, f),
            StmtKind::Try { body, handler, .. } => {
                walk(body, f);
                walk(handler, f);
            }
            _ => {}
        }
    }
}

/// The 1-based column of `name(` on `line`, where `name` is a whole word.
fn find_call(line: &str, name: &str) -> Option<usize> {
    let chars: Vec<char> = line.chars().collect();
    let target: Vec<char> = name.chars().collect();
    (0..chars.len()).find_map(|i| {
        let fits = chars.get(i..i + target.len()) == Some(target.as_slice());
        let before_ok = i == 0 || !avap_guest_vm::tokenizer::is_ident_char(chars[i - 1]);
        let after = chars.get(i + target.len()..).unwrap_or_default().iter().find(|c| !c.is_whitespace());
        (fits && before_ok && after == Some(&'(')).then_some(i + 1)
    })
}

/// The exclusive end column of the word (or the single character) at
/// `column` of `line`.
fn word_end(line: &str, column: usize) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let start = column.saturating_sub(1);
    let word = chars
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| avap_guest_vm::tokenizer::is_ident_char(**c))
        .count();
    column + word.max(1)
}

/// `file:line:col: severity: message`, then the source line and a caret
/// under the range, the way rustc and eslint print them.
pub fn render(file: &str, source: &str, diag: &Diag) -> String {
    let text = source.split('\n').nth(diag.line.wrapping_sub(1)).unwrap_or("").trim_end_matches('\r');
    let gutter = diag.line.to_string().len();
    // The caret lines up with the column whatever the tabs before it.
    let pad: String =
        text.chars().take(diag.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    let width = diag.end_column.saturating_sub(diag.column).max(1);
    format!(
        "{file}:{}:{}: {}: {}\n{:gutter$} |\n{} | {text}\n{:gutter$} | {pad}{}\n",
        diag.line,
        diag.column,
        diag.severity.as_str(),
        diag.message,
        "",
        diag.line,
        "",
        "^".repeat(width),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_has_its_position_and_word() {
        let diags = diagnose("addVar(a, 1)\nif(a, 1, \"==\")\n  addResult(a)\n", &Commands::standard());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].severity, Severity::Error);
        assert_eq!(diags[0].line, 2);
        assert!(diags[0].message.contains("end()"), "{:?}", diags[0]);
    }

    #[test]
    fn an_unknown_command_is_a_warning_at_its_name() {
        let diags = diagnose("addVar(a, 1)\n  frobnicate(a)\n", &Commands::standard());
        assert_eq!(
            diags,
            [Diag {
                severity: Severity::Warning,
                line: 2,
                column: 3,
                end_column: 13,
                message: diags[0].message.clone()
            }]
        );
        assert!(diags[0].message.contains("command 'frobnicate' not found"));
        assert!(diagnose("function frobnicate(x){\nreturn x\n}\nfrobnicate(1)\n", &Commands::standard()).is_empty());
    }

    #[test]
    fn render_points_a_caret_at_the_range() {
        let source = "addVar(a, 1)\n\tfrob(a)\n";
        let diags = diagnose(source, &Commands::standard());
        let text = render("s.avap", source, &diags[0]);
        assert!(text.starts_with("s.avap:2:2: warning: "), "{text}");
        assert!(text.ends_with("2 | \tfrob(a)\n  | \t^^^^\n"), "{text:?}");
    }
}
