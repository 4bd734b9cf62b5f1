//! The console's JSON API (`/api/console/...`, listed in [`super`]). Every
//! handler runs behind `avap dev`'s guard; errors have the host's shape,
//! `{"success": false, "kind": ..., "error": ...}`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use avap_lang::diagnostics::diagnose;
use avap_lang::reference::Origin;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{Problem, RunSlot, Subscriber, stopped};
use crate::dev::{Dev, valid_name};
use crate::local::{capability_hints, execute_body};

/// A request body of the console: JSON, sent as JSON.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "the console's API takes Content-Type: application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body: {e}")))
}

/// The version of a script's text: what a save must name to overwrite it.
pub fn version(source: &str) -> String {
    hex::encode(&Sha256::digest(source.as_bytes())[..16])
}

/// The script `name` as it is on disk, if it is one.
fn read_script(dir: &Path, name: &str) -> Result<Option<String>, Problem> {
    if !valid_name(name) {
        return Err(not_found(name));
    }
    let path = dir.join(format!("{name}.avap"));
    if !path.is_file() {
        return Ok(None);
    }
    crate::run::read_capped(&path)
        .map(Some)
        .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unreadable", format!("{e:#}")))
}

fn not_found(name: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", format!("no script named {name:?}"))
}

/// `GET info`: what the page shows in its header and meters.
pub async fn info(State(dev): State<Arc<Dev>>) -> Response {
    let config = &dev.local.config;
    let grants = &dev.grants;
    let db = grants.db.as_deref().map(|url| url.split(':').next().unwrap_or_default().to_string());
    Json(json!({
        "dir": dev.dir.display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "limits": {
            "fuel": config.fuel,
            "timeout_ms": config.timeout_ms,
            "max_memory_mb": config.max_memory_mb,
            "max_script_bytes": avap_guest_vm::Limits::default().max_script_bytes,
        },
        "grants": {
            "db": db,
            "http": grants.http || !grants.http_allow.is_empty(),
            "http_allow": grants.http_allow,
        },
        "catalog": grants.catalog.as_ref().map(|c| c.display().to_string()),
    }))
    .into_response()
}

/// `GET scripts`: the folder's scripts, by name.
pub async fn scripts(State(dev): State<Arc<Dev>>) -> Response {
    let list: Vec<Value> = crate::dev::scripts(&dev.dir)
        .into_iter()
        .map(|(name, (_, bytes))| json!({"name": name, "path": format!("/{name}"), "bytes": bytes}))
        .collect();
    Json(json!({"scripts": list})).into_response()
}

/// `GET scripts/{name}`: its text and version.
pub async fn script(State(dev): State<Arc<Dev>>, UrlPath(name): UrlPath<String>) -> Result<Response, Problem> {
    let source = read_script(&dev.dir, &name)?.ok_or_else(|| not_found(&name))?;
    Ok(Json(json!({"name": name, "version": version(&source), "source": source})).into_response())
}

#[derive(Deserialize)]
pub struct Save {
    source: String,
    /// The version the page read; `null` for a new script (refused if the
    /// file exists).
    version: Option<String>,
}

/// `PUT scripts/{name}`: writes `name.avap` (whole, through a temporary
/// file and a rename, so the watcher and a running request never read half
/// of it), unless it changed on disk since the page read it (409 with the
/// version on disk).
pub async fn save(
    State(dev): State<Arc<Dev>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let save: Save = parse(&headers, &body)?;
    // One save at a time: the check and the write together.
    let _one = dev.saving.lock().await;
    let current = read_script(&dev.dir, &name)?;
    let on_disk = current.as_deref().map(version);
    if on_disk != save.version {
        let why = match (&on_disk, &save.version) {
            (Some(_), None) => format!("{name}.avap already exists"),
            (Some(_), Some(_)) => format!("{name}.avap changed on disk since the page read it"),
            (None, _) => format!("{name}.avap is no longer on disk"),
        };
        let body = json!({"success": false, "kind": "conflict", "error": why, "version": on_disk});
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    let path = dev.dir.join(format!("{name}.avap"));
    let temporary = dev.dir.join(format!(".{name}.avap.{}.console-tmp", std::process::id()));
    let written = tokio::fs::write(&temporary, save.source.as_bytes()).await;
    let renamed = match written {
        Ok(()) => tokio::fs::rename(&temporary, &path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = renamed {
        let _ = tokio::fs::remove_file(&temporary).await;
        let why = format!("{}: {e}", path.display());
        return Err(Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "unwritable", why));
    }
    eprintln!("avap dev: console saved {name}.avap");
    Ok(Json(json!({"name": name, "version": version(&save.source)})).into_response())
}

#[derive(Deserialize)]
pub struct Source {
    source: String,
}

/// `POST check`: `avap check`'s diagnostics of the text (with the
/// catalog's commands known), as `avap check --format json` gives them.
pub async fn check(State(dev): State<Arc<Dev>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let source: Source = parse(&headers, &body)?;
    let commands = dev.known_commands();
    let diagnostics: Vec<Value> = diagnose(&source.source, &commands)
        .into_iter()
        .map(|d| {
            json!({
                "severity": d.severity,
                "line": d.line,
                "column": d.column,
                "end_line": d.line,
                "end_column": d.end_column,
                "message": d.message,
            })
        })
        .collect();
    Ok(Json(json!({"diagnostics": diagnostics})).into_response())
}

/// `POST format`: `avap fmt`'s layout of the text; a text with syntax
/// errors is not formatted (422, with them).
pub async fn format(headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let source: Source = parse(&headers, &body)?;
    Ok(match avap_lang::fmt::format(&source.source) {
        Ok(formatted) => Json(json!({"changed": formatted != source.source, "formatted": formatted})).into_response(),
        Err(diags) => {
            let list: Vec<Value> =
                diags.iter().map(|d| json!({"line": d.line, "column": d.column, "message": d.message})).collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "success": false,
                    "kind": "syntax_error",
                    "error": "not formatted: the script has syntax errors",
                    "diagnostics": list,
                })),
            )
                .into_response()
        }
    })
}

#[derive(Deserialize)]
pub struct Run {
    /// Names the run for `runs/{id}/cancel`.
    id: Option<String>,
    /// The script's name, for the terminal only.
    name: Option<String>,
    script: String,
    /// The request's parameters: the JSON body's fields.
    #[serde(default)]
    params: Map<String, Value>,
    /// The query string, without `?`.
    #[serde(default)]
    query: String,
    #[serde(default)]
    variables: Map<String, Value>,
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `POST run`: the text through the host's router and sandbox, as `POST
/// /name` runs a file. The answer wraps the host's: `{"status", "response",
/// "elapsed_ms"}`, or `{"cancelled": true}` when `runs/{id}/cancel` (or
/// the page going away) stopped it: the execution's future is dropped,
/// which stops the guest at its next epoch tick and frees its slot.
pub async fn run(State(dev): State<Arc<Dev>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let run: Run = parse(&headers, &body)?;
    let id = match run.id.clone() {
        Some(id) => id,
        None => {
            let mut bytes = [0u8; 12];
            getrandom::fill(&mut bytes).map_err(|_| Problem::internal("the random source"))?;
            format!("run-{}", hex::encode(bytes))
        }
    };
    let bad = |why: String| Problem::new(StatusCode::BAD_REQUEST, "bad_request", why);
    if !valid_run_id(&id) {
        return Err(bad("a run id is 1 to 64 letters, digits, - and _".into()));
    }
    if run.query.contains(['#', ' ', '\n', '\r']) {
        return Err(bad("the query string must be URL-encoded".into()));
    }
    let request = execute_body(&run.script, run.variables, run.params).map_err(|e| bad(e.to_string()))?;
    let slot: RunSlot = dev.console.start_run(&id)?;
    let label = run.name.filter(|n| valid_name(n)).unwrap_or_else(|| "(unsaved)".into());
    let started = Instant::now();
    let query = Some(run.query.as_str()).filter(|q| !q.is_empty());
    let outcome = tokio::select! {
        outcome = dev.local.execute(&request, query) => Some(outcome),
        () = slot.cancel.notified() => None,
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        None => {
            eprintln!("avap dev: console run {label}: cancelled after {elapsed_ms:.0} ms");
            Ok(Json(json!({"cancelled": true, "elapsed_ms": elapsed_ms})).into_response())
        }
        Some(Ok((status, response))) => {
            eprintln!("avap dev: console run {label}: {status} ({elapsed_ms:.0} ms)");
            for hint in capability_hints(&response) {
                eprintln!("avap dev: {hint}");
            }
            Ok(Json(json!({"status": status, "response": response, "elapsed_ms": elapsed_ms})).into_response())
        }
        Some(Err(e)) => Err(bad(format!("{e:#}"))),
    }
}

/// `POST runs/{id}/cancel`.
pub async fn cancel(State(dev): State<Arc<Dev>>, UrlPath(id): UrlPath<String>) -> Result<Response, Problem> {
    if !(valid_run_id(&id) && dev.console.cancel(&id)) {
        return Err(Problem::new(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?} in flight")));
    }
    Ok(Json(json!({"cancelled": id})).into_response())
}

/// `GET commands`: every command a script here can call, with its
/// documentation (the standard ones, then the catalog folder's).
pub async fn commands(State(dev): State<Arc<Dev>>) -> Response {
    let commands = dev.known_commands();
    let list: Vec<Value> = commands
        .by_name
        .values()
        .map(|c| {
            let params: Vec<Value> =
                c.params.iter().zip(&c.kinds).map(|(name, kind)| json!({"name": name, "kind": kind})).collect();
            let (origin, file) = match &c.origin {
                Origin::Standard => ("standard", None),
                Origin::Catalog(file) => ("catalog", Some(file.clone())),
            };
            json!({
                "name": c.name,
                "signature": c.signature(),
                "params": params,
                "description": c.description,
                "example": c.example,
                "origin": origin,
                "file": file,
            })
        })
        .collect();
    Json(json!({"commands": list})).into_response()
}

/// `GET events`: a server-sent event per change the watcher sees
/// (`changed`, `removed`, `commands`), after a `hello`; keep-alive comments
/// every 15 s. The stream ends when the server shuts down.
pub async fn events(State(dev): State<Arc<Dev>>) -> Result<Response, Problem> {
    let subscriber = Subscriber::enter(&dev.console.subscribers)
        .ok_or_else(|| Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many pages are listening".into()))?;
    let receiver = dev.console.events.subscribe();
    let stop = dev.console.stop.clone();
    let hello =
        futures_util::stream::once(async { Ok::<_, Infallible>(SseEvent::default().event("hello").data("{}")) });
    let changes =
        futures_util::stream::unfold((receiver, stop, subscriber), |(mut receiver, stop, subscriber)| async move {
            let event = tokio::select! {
                () = stopped(stop.clone()) => return None,
                event = receiver.recv() => event,
            };
            let sse = match event {
                Ok(event) => event.to_sse(),
                // Fell behind: the page reloads everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    SseEvent::default().event("resync").data("{}")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(sse), (receiver, stop, subscriber)))
        });
    use futures_util::StreamExt as _;
    Ok(Sse::new(hello.chain(changes)).keep_alive(KeepAlive::default()).into_response())
}
