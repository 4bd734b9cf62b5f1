//! `avap check` and `avap fmt`: the parser only (`avap-lang`), nothing runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use avap_lang::diagnostics::{Severity, diagnose, render};
use avap_lang::reference::Commands;
use serde_json::json;

use crate::run::read_capped;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: severity: message`, the line and a caret.
    Text,
    /// One JSON array of every diagnostic, for tools.
    Json,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Scripts, or folders searched for `*.avap` (`-`: stdin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// A catalog folder: calls to its commands are not warned about.
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(clap::Args)]
pub struct FmtArgs {
    /// Scripts, or folders searched for `*.avap` (`-`: stdin to stdout).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Change nothing; list the files that would change, with a diff, and
    /// exit 1 if any would.
    #[arg(long)]
    pub check: bool,
}

/// The files named, folders expanded to their `*.avap` files (sorted).
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() && depth > 0 {
                walk(&path, depth - 1, out)?;
            } else if path.extension().is_some_and(|e| e == "avap") && path.is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = out.len();
            walk(path, 16, &mut out).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            if out.len() == before {
                bail!("no .avap files under {}", path.display());
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn display(path: &Path) -> String {
    if path.as_os_str() == "-" { "<stdin>".into() } else { path.display().to_string() }
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let commands = match &args.catalog {
        None => Commands::standard(),
        // A folder with problems is refused whole, as `run --catalog` and a
        // definition server refuse it: checking against part of it would
        // report a result for a catalog that exists nowhere (exit 2).
        Some(dir) => {
            let (commands, problems) = Commands::with_catalog(dir).map_err(|e| anyhow::anyhow!("--catalog: {e}"))?;
            if !problems.is_empty() {
                let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                bail!("the catalog folder {} has problems:\n{}", dir.display(), lines.join("\n"));
            }
            commands
        }
    };
    let files = expand(&args.files)?;
    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut all = Vec::new();
    let mut out = std::io::stdout().lock();
    for file in &files {
        let source = read_capped(file)?;
        let name = display(file);
        for diag in diagnose(&source, &commands) {
            match diag.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match args.format {
                Format::Text => writeln!(out, "{}", render(&name, &source, &diag))?,
                Format::Json => all.push(json!({
                    "file": name,
                    "severity": diag.severity,
                    "line": diag.line,
                    "column": diag.column,
                    "end_line": diag.line,
                    "end_column": diag.end_column,
                    "message": diag.message,
                })),
            }
        }
    }
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::Value::Array(all))?,
        Format::Text => {
            let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            writeln!(
                out,
                "{}, {} in {}",
                plural(errors, "error"),
                plural(warnings, "warning"),
                plural(files.len(), "file")
            )?;
        }
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn fmt(args: FmtArgs) -> anyhow::Result<ExitCode> {
    let files = expand(&args.files)?;
    let mut failed = false;
    for file in &files {
        let source = read_capped(file)?;
        let name = display(file);
        let formatted = match avap_lang::fmt::format(&source) {
            Ok(text) => text,
            Err(diags) => {
                failed = true;
                eprintln!("avap: {name}: not formatted, it has syntax errors:");
                for d in diags {
                    eprintln!("{name}:{}:{}: error: {}", d.line, d.column, d.message);
                }
                continue;
            }
        };
        if file.as_os_str() == "-" && !args.check {
            print!("{formatted}");
            continue;
        }
        if formatted == source {
            continue;
        }
        if args.check {
            failed = true;
            println!("would reformat {name}");
            print!("{}", similar::TextDiff::from_lines(&source, &formatted).unified_diff().header(&name, &name));
        } else {
            std::fs::write(file, &formatted).map_err(|e| anyhow::anyhow!("cannot write {name}: {e}"))?;
            println!("formatted {name}");
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
