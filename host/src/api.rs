//! The HTTP API: `POST /api/v1/execute`, `POST /api/v1/compile`,
//! `GET /health`, `GET /metrics`.
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
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::abi::{GuestInput, GuestOutput};
use crate::sandbox::{Execution, SandboxError};
use crate::state::AppState;

/// Builds the router; binding a socket is the caller's business.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/api/v1/execute", post(execute))
        .route("/api/v1/compile", post(compile))
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

/// The request body of `execute`: `script` (or a signed `package`),
/// optional `variables`, and any other top-level keys, which are request
/// parameters for `addParam`.
struct ExecuteRequest {
    program: Program,
    variables: Map<String, Value>,
    params: Map<String, Value>,
}

enum Program {
    Script(String),
    /// Base64 of a signed AVAP package whose payload is the script.
    Package(String),
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("request body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(bad_request("request body must be a JSON object")),
    }
}

fn non_empty_script(value: Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
        Some(Value::String(_)) => Err(bad_request(format!("\"{field}\" is empty"))),
        Some(_) => Err(bad_request(format!("\"{field}\" must be a string"))),
    }
}

fn parse_execute_body(body: &[u8]) -> Result<ExecuteRequest, ApiError> {
    let mut params = json_object(body)?;
    let script = non_empty_script(params.shift_remove("script"), "script")?;
    let package = non_empty_script(params.shift_remove("package"), "package")?;
    let program = match (script, package) {
        (Some(script), None) => Program::Script(script),
        (None, Some(package)) => Program::Package(package),
        (Some(_), Some(_)) => return Err(bad_request("give either \"script\" or \"package\", not both")),
        (None, None) => return Err(bad_request("missing \"script\" field (or a signed \"package\")")),
    };
    let variables = match params.shift_remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v,
        Some(_) => return Err(bad_request("\"variables\" must be a JSON object")),
    };
    Ok(ExecuteRequest { program, variables, params })
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The request body as bytes, or 413 / 400.
fn body_bytes(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            state.metrics.reject("body_too_large");
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds the limit of {} bytes", state.max_body_bytes),
            )
        } else {
            state.metrics.reject("bad_request");
            bad_request(rejection.body_text())
        }
    })
}

/// Verifies a base64 signed package and returns its script. A package that
/// fails verification is never run.
fn open_package(state: &AppState, encoded: &str) -> Result<String, ApiError> {
    let bytes =
        BASE64.decode(encoded.trim()).map_err(|e| bad_request(format!("\"package\" is not valid base64: {e}")))?;
    let payload = avap_wire::package::verify(&state.internal_key, &bytes).map_err(|e| {
        state.metrics.reject("integrity");
        ApiError::new(StatusCode::FORBIDDEN, "integrity", format!("package refused, not executed: {e}"))
    })?;
    String::from_utf8(payload.to_vec()).map_err(|_| bad_request("the package's payload is not UTF-8 AVAP source"))
}

/// Runs one guest document behind the gate, counting it.
async fn run_in_sandbox(
    state: &AppState,
    input: &GuestInput<'_>,
) -> Result<(Execution, GuestOutput, String), ApiError> {
    let _permit = state.gate.enter().await.map_err(|e| sandbox_error(state, e))?;
    let _active = state.metrics.active_guard();
    let guest = state.guest();
    let started = Instant::now();
    let result = state.run_guest(&guest, input).await;
    state.metrics.observe_duration(started.elapsed().as_secs_f64());
    let (execution, output) = result.map_err(|e| sandbox_error(state, e))?;
    Ok((execution, output, guest.info().version.clone()))
}

/// A guest failure document as a 400 response.
fn script_error(state: &AppState, output: GuestOutput) -> ApiError {
    let kind = match output.kind.as_deref() {
        Some("syntax") => "syntax_error",
        Some("limit") => "limit_error",
        Some("input") => "bad_request",
        _ => "runtime_error",
    };
    state.metrics.request(kind);
    let mut err = ApiError::new(StatusCode::BAD_REQUEST, kind, output.error.unwrap_or_else(|| "script failed".into()));
    if let Some(line) = output.line {
        err.extra.push(("line", line.into()));
    }
    if let Some(diagnostics) = output.diagnostics {
        err.extra.push(("diagnostics", diagnostics));
    }
    if let Some(logs) = output.logs {
        err.extra.push(("logs", logs));
    }
    err
}

async fn execute(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(&state, body)?;
    let request = parse_execute_body(&body).inspect_err(|_| state.metrics.reject("bad_request"))?;
    let script = match request.program {
        Program::Script(script) => script,
        Program::Package(encoded) => open_package(&state, &encoded)?,
    };
    let catalog = state.catalog();
    let query = query_pairs(query.as_deref());
    let input = GuestInput {
        script: &script,
        variables: Some(&request.variables),
        query: &query,
        body: Some(&request.params),
        catalog: catalog.guest_json.as_deref(),
        mode: None,
    };
    let (execution, output, guest_version) = run_in_sandbox(&state, &input).await?;
    if !output.ok {
        return Err(script_error(&state, output));
    }

    state.metrics.request("ok");
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
    let mut response = (status, axum::Json(Value::Object(body))).into_response();
    if let Ok(v) = HeaderValue::from_str(&guest_version) {
        response.headers_mut().insert(GUEST_VERSION_HEADER, v);
    }
    Ok(response)
}

/// Response header naming the guest version that ran the script.
pub const GUEST_VERSION_HEADER: &str = "x-avap-guest-version";

/// `POST /api/v1/compile` with `{"name", "script"}`: parse and validate in
/// the guest; 400 with every diagnostic, or 200 with a signed package of the
/// script that `execute` accepts as `{"package": ...}`.
async fn compile(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(&state, body)?;
    let mut fields = json_object(&body).inspect_err(|_| state.metrics.reject("bad_request"))?;
    let script = non_empty_script(fields.shift_remove("script"), "script")?
        .ok_or_else(|| bad_request("missing \"script\" field"))?;
    let name = match fields.shift_remove("name") {
        None | Some(Value::Null) => "script".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => return Err(bad_request("\"name\" must be a non-empty string")),
    };
    let catalog = state.catalog();
    let input = GuestInput { catalog: catalog.guest_json.as_deref(), ..GuestInput::bare(&script, Some("check")) };
    let (_, output, _) = run_in_sandbox(&state, &input).await?;
    if !output.ok {
        return Err(script_error(&state, output));
    }
    state.metrics.request("compiled");
    let package = avap_wire::package::pack(&state.internal_key, script.as_bytes())
        .map_err(|e| internal("signing a package", e))?;
    Ok(axum::Json(json!({
        "success": true,
        "name": name,
        "package": BASE64.encode(&package),
        "hash": avap_wire::catalog::entry_hash(&package),
        "diagnostics": [],
        "commands": output.commands.unwrap_or_default(),
        "functions": output.functions.unwrap_or_default(),
    }))
    .into_response())
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
        assert!(matches!(r.program, Program::Script(ref s) if s == "addVar(a,1)"));
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
            (br#"{"script":"x","package":"QUJD"}"#, "not both"),
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
