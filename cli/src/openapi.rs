//! `avap dev`'s OpenAPI 3.1 document, served at `/openapi.json`: every
//! script of the folder as `POST /name`, with the parameters it reads with
//! `addParam` (found in its syntax tree, functions included) and its
//! leading `//` comment as its description. The console builds its
//! endpoint forms from this document only, so whatever it lists (the
//! endpoints a folder registers, when `avap dev` serves them) gets a form.
//!
//! `addParam` reads the query string first, then the JSON body's fields:
//! each parameter is listed `in: query`, and the body is an object whose
//! fields are parameters too (`variables` seeds the script's variables).

use std::collections::BTreeMap;
use std::path::Path;

use avap_guest_vm::ast::{Block, CmdArg, Expr, StmtKind, ValueArg};
use avap_guest_vm::builtins::Builtin;
use serde_json::{Map, Value, json};

/// A parameter name and the line of the first `addParam` that reads it.
type Param = (String, usize);

/// The document for the scripts `names` of `dir`.
pub fn document<'a>(dir: &Path, names: impl IntoIterator<Item = &'a String>) -> Value {
    let mut paths = Map::new();
    for name in names {
        paths.insert(format!("/{name}"), json!({ "post": operation(dir, name) }));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("avap dev: {}", dir.display()),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The scripts `avap dev` serves: `POST /name` runs `name.avap` as it is on disk. \
                            Parameters are read by `addParam` from the query string, then from the JSON \
                            body's fields.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Executed": {
                    "type": "object",
                    "description": "The script ran to its end (the host's `execute` response).",
                    "required": ["success", "result", "variables", "logs"],
                    "properties": {
                        "success": {"const": true},
                        "result": {"type": "object", "description": "What the script added with addResult."},
                        "variables": {"type": "object"},
                        "logs": {"type": "array", "items": {"type": "object"}},
                        "usage": {"type": "object", "description": "Fuel and milliseconds used."},
                    },
                },
                "Failed": {
                    "type": "object",
                    "description": "The script failed or was refused: the host's error shape.",
                    "required": ["success", "kind", "error"],
                    "properties": {
                        "success": {"const": false},
                        "kind": {"type": "string"},
                        "error": {"type": "string"},
                        "line": {"type": "integer"},
                    },
                },
            },
        },
    })
}

/// `POST /name`.
fn operation(dir: &Path, name: &str) -> Value {
    let file = format!("{name}.avap");
    let (params, description) = match crate::run::read_capped(&dir.join(&file)) {
        Err(e) => (Vec::new(), format!("{file} cannot be read: {e:#}")),
        Ok(source) => {
            let comment = leading_comment(&source);
            match avap_guest_vm::parser::parse(&source) {
                Ok(program) => {
                    let mut params = Vec::new();
                    collect(&program.main, &mut params);
                    let mut functions: Vec<_> = program.functions.values().collect();
                    functions.sort_by_key(|f| f.line);
                    for function in functions {
                        collect(&function.body, &mut params);
                    }
                    let text = if comment.is_empty() { format!("Runs {file}.") } else { comment };
                    (params, text)
                }
                Err(diags) => {
                    let first = diags.first().map(|d| format!(" (line {}: {})", d.line, d.message));
                    (
                        Vec::new(),
                        format!("{file} does not parse{}; a request gets 400 syntax_error.", first.unwrap_or_default()),
                    )
                }
            }
        }
    };
    let parameters: Vec<Value> = params
        .iter()
        .map(|(param, line)| {
            json!({
                "name": param,
                "in": "query",
                "required": false,
                "schema": {"type": "string"},
                "description": format!("Read with addParam at line {line} (also taken from the JSON body)."),
            })
        })
        .collect();
    let mut properties = Map::new();
    for (param, line) in &params {
        properties.insert(param.clone(), json!({"description": format!("Read with addParam at line {line}.")}));
    }
    properties.insert(
        "variables".into(),
        json!({"type": "object", "description": "Seeds the script's variables before it runs."}),
    );
    json!({
        "operationId": name,
        "summary": file,
        "description": description,
        "tags": ["scripts"],
        "parameters": parameters,
        "requestBody": {
            "required": false,
            "description": "A JSON object: its fields are parameters too.",
            "content": {"application/json": {"schema": {"type": "object", "properties": properties}}},
        },
        "responses": {
            "200": {
                "description": "The script ran (a script may set another status with _status).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Executed"}}},
            },
            "default": {
                "description": "The script failed (400 syntax_error, runtime_error; 504 timeout, ...) or the file is gone (404).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Failed"}}},
            },
        },
        "x-avap-script": file,
    })
}

/// The names `addParam` reads in `block`, in order, once each. A name is a
/// bare word or a string literal; a name computed at run time is not known
/// here and is left out.
fn collect(block: &Block, out: &mut Vec<Param>) {
    for stmt in block {
        match &stmt.kind {
            StmtKind::Command { builtin: Builtin::AddParam, args } => {
                let name = match args.first() {
                    Some(CmdArg::Value(ValueArg::Word(word))) => Some(word.clone()),
                    Some(CmdArg::Value(ValueArg::Expr(Expr::Str(text)))) => Some(text.to_string()),
                    _ => None,
                };
                if let Some(name) = name.filter(|n| !n.is_empty() && !out.iter().any(|(seen, _)| seen == n)) {
                    out.push((name, stmt.line));
                }
            }
            StmtKind::If { then_block, else_block, .. } => {
                collect(then_block, out);
                collect(else_block, out);
            }
            StmtKind::Loop { body, .. } | StmtKind::While { body, .. } => collect(body, out),
            StmtKind::Try { body, handler, .. } => {
                collect(body, out);
                collect(handler, out);
            }
            _ => {}
        }
    }
}

/// The `//` comment lines at the top of a script: its description.
fn leading_comment(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The document for every script of `dir` now.
pub fn of_folder(dir: &Path) -> Value {
    let scripts: BTreeMap<String, _> = crate::dev::scripts(dir);
    document(dir, scripts.keys())
}
