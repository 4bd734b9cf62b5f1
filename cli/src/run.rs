//! `avap run` and `avap test`: scripts through the host's own router in
//! this process ([`crate::local`]).

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use avap_tests::case::{self, Case};
use serde_json::{Map, Value};

use crate::local::{Grants, Local, capability_hints, execute_body};

/// Largest script or JSON file read (the host's request cap is smaller).
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The script (`-`: read it from stdin).
    pub script: PathBuf,
    /// A request parameter `name=value` (text), as a client would send it
    /// in the JSON body; repeatable.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A variable set before the script runs, `name=<JSON>` (`n=3`,
    /// `s='"text"'`, `l='[1,2]'`); repeatable.
    #[arg(long = "var", value_name = "NAME=JSON")]
    pub vars: Vec<String>,
    /// A JSON object file whose fields are request parameters (the body a
    /// client would POST).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// The request's query string, without `?` (`a=1&b=two`); `addParam`
    /// reads it before the body.
    #[arg(long, value_name = "QUERY")]
    pub query: Option<String>,
    /// Print the response compact (one line) even on a terminal.
    #[arg(long, conflicts_with = "pretty")]
    pub compact: bool,
    /// Print the response indented even when not on a terminal.
    #[arg(long)]
    pub pretty: bool,
    /// Do not print the command log on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub grants: Grants,
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// A case folder, or a folder holding case folders at any depth.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Run only the cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// The base URL `{svc}` stands for in expected files, also given to
    /// the script as the variable `svc` (the repository's capability cases).
    #[arg(long, value_name = "URL")]
    pub svc: Option<String>,
    #[command(flatten)]
    pub grants: Grants,
}

pub fn read_capped(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(MAX_FILE_BYTES + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
    };
    read.with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        bail!("{} is over {MAX_FILE_BYTES} bytes", path.display());
    }
    Ok(text)
}

fn split_pair<'a>(item: &'a str, flag: &str) -> anyhow::Result<(&'a str, &'a str)> {
    item.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| anyhow!("{flag} {item:?}: expected NAME=VALUE"))
}

/// The request the flags describe: variables and parameters.
fn request(args: &RunArgs) -> anyhow::Result<(Map<String, Value>, Map<String, Value>)> {
    let mut params = Map::new();
    if let Some(path) = &args.body {
        let text = read_capped(path)?;
        match serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))? {
            Value::Object(fields) => params.extend(fields),
            _ => bail!("{} must hold a JSON object (its fields are the request parameters)", path.display()),
        }
    }
    for item in &args.params {
        let (k, v) = split_pair(item, "--param")?;
        params.insert(k.to_string(), Value::String(v.to_string()));
    }
    let mut variables = Map::new();
    for item in &args.vars {
        let (k, v) = split_pair(item, "--var")?;
        let value = serde_json::from_str(v)
            .with_context(|| format!("--var {k}: {v:?} is not JSON (text is written with quotes: {k}='\"{v}\"')"))?;
        variables.insert(k.to_string(), value);
    }
    Ok((variables, params))
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let script = read_capped(&args.script)?;
    let (variables, params) = request(&args)?;
    let body = execute_body(&script, variables, params)?;
    let local = Local::start(&args.grants).await?;
    let (status, response) = local.execute(&body, args.query.as_deref()).await?;
    if !args.quiet {
        print_logs(&response);
    }
    let pretty = args.pretty || (!args.compact && std::io::stdout().is_terminal());
    let text = if pretty { serde_json::to_string_pretty(&response)? } else { serde_json::to_string(&response)? };
    println!("{text}");
    let ok = response.get("success") == Some(&Value::Bool(true));
    if !ok && !args.quiet {
        let name = args.script.display();
        match (response.get("kind").and_then(Value::as_str), response.get("error").and_then(Value::as_str)) {
            (Some(kind), Some(error)) => eprintln!("avap: {name}: {kind} (HTTP {status}): {error}"),
            _ => eprintln!("avap: {name}: failed (HTTP {status})"),
        }
    }
    if !args.quiet {
        for hint in capability_hints(&response) {
            eprintln!("avap: {hint}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One stderr line per command the script ran.
fn print_logs(response: &Value) {
    let Some(logs) = response.get("logs").and_then(Value::as_array) else { return };
    for log in logs {
        if let Some(stream) = log.get("stream").and_then(Value::as_str) {
            let text = log.get("text").and_then(Value::as_str).unwrap_or_default();
            eprintln!("[{stream}] {}", text.trim_end());
            continue;
        }
        let command = log.get("command").and_then(Value::as_str).unwrap_or("?");
        let line = log.get("line").map(Value::to_string).unwrap_or_else(|| "?".into());
        let ms = log.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0);
        let ok = log.get("success") == Some(&Value::Bool(true));
        let error = log.get("error").and_then(Value::as_str).map(|e| format!(": {e}")).unwrap_or_default();
        eprintln!("line {line}: {command} {} ({ms:.3} ms){error}", if ok { "ok" } else { "failed" });
    }
}

/// Every case folder under `dir` (itself, if it is one), sorted by path.
fn case_folders(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        if dir.join("script.avap").is_file() && dir.join("expected.json").is_file() {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        if depth == 0 {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        for entry in entries {
            walk(&entry, depth - 1, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 6, &mut out)?;
    Ok(out)
}

pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let mut folders = case_folders(&args.dir)?;
    if let Some(filter) = &args.filter {
        folders.retain(|d| case::name_of(d).contains(filter.as_str()));
    }
    if folders.is_empty() {
        bail!("no case folders (script.avap + expected.json) under {}", args.dir.display());
    }
    let local = Local::start(&args.grants).await?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in &folders {
        let name = dir.strip_prefix(&args.dir).ok().filter(|p| !p.as_os_str().is_empty()).unwrap_or(dir);
        let outcome = match Case::load(dir) {
            Err(e) => Err(format!("cannot load the case: {e}")),
            Ok(case) => {
                let body = case.request_body(args.svc.as_deref());
                match local.execute(&body, case.request.query.as_deref()).await {
                    Err(e) => Err(format!("cannot run: {e:#}")),
                    Ok((status, response)) => case.check(status, &response, args.svc.as_deref()).map_err(|why| {
                        let mut text = format!("{why}\n{}", diff(&case, status, &response, args.svc.as_deref()));
                        for hint in capability_hints(&response) {
                            text.push_str(hint);
                            text.push('\n');
                        }
                        text
                    }),
                }
            }
        };
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("ok     {}", name.display());
            }
            Err(why) => {
                failed += 1;
                println!("FAILED {}", name.display());
                for line in why.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A unified diff of the expected body and the same fields of the actual
/// response (with the status), indented JSON.
fn diff(case: &Case, status: u16, response: &Value, svc: Option<&str>) -> String {
    let mut expected = Map::new();
    expected.insert("status".into(), Value::from(case.expected.status));
    let mut actual = Map::new();
    actual.insert("status".into(), Value::from(status));
    for (key, value) in &case.expected.body {
        let value = match (value, svc) {
            (Value::String(s), Some(svc)) => Value::String(s.replace("{svc}", svc)),
            _ => value.clone(),
        };
        expected.insert(key.clone(), value);
        actual.insert(key.clone(), response.get(key).cloned().unwrap_or(Value::Null));
    }
    let expected = serde_json::to_string_pretty(&expected).unwrap_or_default() + "\n";
    let actual = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
