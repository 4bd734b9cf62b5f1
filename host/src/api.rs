//! The HTTP API: `POST /api/v1/execute`, `GET /health`, `GET /metrics`.
//!
//! Handlers stay thin: decode the request, take a slot of the gate, run the
//! sandbox, map its typed outcome to a status (WIRE.md section 3). Client
//! mistakes get a 4xx saying what was wrong; host faults get a 5xx that says
//! nothing internal (the details go to the log).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::sandbox::SandboxError;
use crate::state::AppState;

/// Builds the router; binding a socket is the caller's business.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/api/v1/execute", post(execute))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An error response: a status, a stable `kind`, and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    extra: Vec<(&'static str, Value)>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), extra: Vec::new(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("success".into(), Value::Bool(false));
        body.insert("error".into(), Value::String(self.message));
        body.insert("kind".into(), Value::String(self.kind.into()));
        body.extend(self.extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The request body of `execute`: `script`, optional `variables`, and any
/// other top-level keys, which are request parameters for `addParam`.
struct ExecuteRequest {
    script: String,
    variables: Map<String, Value>,
    params: Map<String, Value>,
}

fn parse_execute_body(body: &[u8]) -> Result<ExecuteRequest, ApiError> {
    let bad = |msg: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg);
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut params) = value else {
        return Err(bad("request body must be a JSON object with a \"script\" field".into()));
    };
    let script = match params.shift_remove("script") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => return Err(bad("\"script\" is empty".into())),
        Some(_) => return Err(bad("\"script\" must be a string".into())),
        None => return Err(bad("missing \"script\" field".into())),
    };
    let variables = match params.shift_remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v,
        Some(_) => return Err(bad("\"variables\" must be a JSON object".into())),
    };
    Ok(ExecuteRequest { script, variables, params })
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The guest's output document (docs/ABI.md). Untrusted: every field is
/// optional and type-checked by serde; nothing in it can make the host fail.
#[derive(Deserialize)]
struct GuestOutput {
    ok: bool,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    logs: Option<Value>,
    #[serde(default)]
    logs_truncated: bool,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    line: Option<u32>,
    #[serde(default)]
    diagnostics: Option<Value>,
}

async fn execute(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            metrics.reject("body_too_large");
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds the limit of {} bytes", state.max_body_bytes),
            )
        } else {
            metrics.reject("bad_request");
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
        }
    })?;
    let request = parse_execute_body(&body).inspect_err(|_| metrics.reject("bad_request"))?;
    let input = json!({
        "script": request.script,
        "variables": request.variables,
        "query": query_pairs(query.as_deref()),
        "body": request.params,
    });
    let input = serde_json::to_vec(&input).map_err(|e| internal("encoding guest input", e))?;

    let _permit = state.gate.enter().await.map_err(|e| sandbox_error(&state, e))?;
    let _active = metrics.active_guard();
    let guest = state.guest();
    let started = Instant::now();
    let result = state.engine.execute(&guest, &state.limits, &input).await;
    metrics.observe_duration(started.elapsed().as_secs_f64());
    let execution = result.map_err(|e| sandbox_error(&state, e))?;
    let output: GuestOutput = serde_json::from_slice(&execution.output).map_err(|e| {
        metrics.request("guest_crash");
        tracing::error!(error = %e, "guest returned malformed output");
        ApiError::new(StatusCode::BAD_GATEWAY, "guest_error", "the interpreter returned a malformed result")
    })?;

    if !output.ok {
        let kind = match output.kind.as_deref() {
            Some("syntax") => "syntax_error",
            Some("limit") => "limit_error",
            Some("input") => "bad_request",
            _ => "runtime_error",
        };
        metrics.request(kind);
        let mut err =
            ApiError::new(StatusCode::BAD_REQUEST, kind, output.error.unwrap_or_else(|| "script failed".into()));
        if let Some(line) = output.line {
            err.extra.push(("line", line.into()));
        }
        if let Some(diagnostics) = output.diagnostics {
            err.extra.push(("diagnostics", diagnostics));
        }
        if let Some(logs) = output.logs {
            err.extra.push(("logs", logs));
        }
        return Err(err);
    }

    metrics.request("ok");
    let status = output
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .unwrap_or(StatusCode::OK);
    let empty = || Value::Object(Map::new());
    let mut body = Map::new();
    body.insert("success".into(), Value::Bool(true));
    body.insert("result".into(), output.result.unwrap_or_else(empty));
    body.insert("variables".into(), output.variables.unwrap_or_else(empty));
    let mut logs = match output.logs {
        Some(Value::Array(logs)) => logs,
        _ => Vec::new(),
    };
    for (stream, bytes) in [("stdout", &execution.stdout), ("stderr", &execution.stderr)] {
        if !bytes.is_empty() {
            logs.push(json!({ "stream": stream, "text": String::from_utf8_lossy(bytes) }));
        }
    }
    body.insert("logs".into(), Value::Array(logs));
    if output.logs_truncated {
        body.insert("logs_truncated".into(), Value::Bool(true));
    }
    body.insert(
        "usage".into(),
        json!({ "fuel": execution.fuel_used, "duration_ms": execution.duration.as_micros() as f64 / 1000.0 }),
    );
    Ok((status, axum::Json(Value::Object(body))).into_response())
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

/// Maps a sandbox outcome to a response (WIRE.md section 3) and counts it.
fn sandbox_error(state: &AppState, err: SandboxError) -> ApiError {
    let metrics = &state.metrics;
    let (status, kind) = match &err {
        SandboxError::Busy(_) => {
            metrics.reject("busy");
            let mut e =
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "all execution slots are busy; retry shortly");
            e.retry_after = Some(1);
            return e;
        }
        SandboxError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        SandboxError::OutOfFuel(_) => (StatusCode::GATEWAY_TIMEOUT, "out_of_fuel"),
        SandboxError::MemoryLimit(_) => (StatusCode::INSUFFICIENT_STORAGE, "memory_limit"),
        SandboxError::StackOverflow => (StatusCode::BAD_REQUEST, "stack_overflow"),
        SandboxError::InputTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        SandboxError::OutputTooLarge { .. } => (StatusCode::INSUFFICIENT_STORAGE, "output_too_large"),
        SandboxError::GuestCrash(_) | SandboxError::GuestAbi(_) => {
            tracing::warn!(error = %err, "guest failed");
            (StatusCode::BAD_GATEWAY, "guest_crash")
        }
        SandboxError::Internal(_) => {
            metrics.request("internal");
            return internal("sandbox", err);
        }
    };
    metrics.request(kind);
    let message = match &err {
        SandboxError::GuestCrash(_) | SandboxError::GuestAbi(_) => "the interpreter crashed on this script".to_string(),
        other => other.to_string(),
    };
    ApiError::new(status, kind, message)
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(state.health())
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_body_keeps_extra_keys_as_params() {
        let r =
            parse_execute_body(br#"{"script":"addVar(a,1)","variables":{"x":1},"name":"Ann","n":2}"#).expect("valid");
        assert_eq!(r.script, "addVar(a,1)");
        assert_eq!(r.variables.get("x"), Some(&json!(1)));
        assert_eq!(r.params.keys().collect::<Vec<_>>(), ["name", "n"]);
    }

    #[test]
    fn execute_body_errors_say_what_is_wrong() {
        for (body, needle) in [
            (&b"{"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "missing \"script\""),
            (br#"{"script":"  \n "}"#, "empty"),
            (br#"{"script":5}"#, "must be a string"),
            (br#"{"script":"x","variables":[1]}"#, "\"variables\" must be"),
        ] {
            let err = parse_execute_body(body).err().expect("rejected");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(needle), "{} should contain {needle}", err.message);
        }
    }

    #[test]
    fn query_pairs_keep_order_and_decode() {
        assert_eq!(
            query_pairs(Some("b=2&a=x%20y&b=3")),
            vec![("b".into(), "2".into()), ("a".into(), "x y".into()), ("b".into(), "3".into())]
        );
        assert!(query_pairs(None).is_empty());
    }
}
