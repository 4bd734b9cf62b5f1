//! The HTTP API: `POST /api/v1/execute`, `POST /api/v1/compile`,
//! `GET /health`, `GET /metrics`.
//!
//! Handlers stay thin: read the body (within the front door's caps), check
//! it, take a slot of the gate, run the sandbox, map its typed outcome to a
//! status (WIRE.md section 3). Client mistakes get a 4xx saying what was
//! wrong; host faults get a 5xx that says nothing internal (the details go
//! to the log).
//!
//! JSON from the client and from the guest is never built into a tree: the
//! body is validated in one pass (depth, duplicate keys, numbers) and split
//! into raw top-level fields; the guest's `result`, `variables` and `logs`
//! are copied into the response as the text they are.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use avap_abi::{MAX_JSON_DEPTH, Mode};
use avap_policy::json::{self as boundary, GuestOutput, Kind};

use crate::runtime::abi::{GuestInput, RawFields};
use crate::runtime::{Execution, SandboxError};
use crate::state::{AppState, Live};

mod error;
pub mod health;
pub mod openapi;
mod outcome;

pub use error::ApiError;
use error::Extra;
pub use outcome::Outcome;

/// Builds the router; binding a socket is the caller's business.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/execute", post(execute))
        .route("/api/v1/compile", post(compile))
        .route("/health", get(health))
        .route("/", get(to_health))
        .route("/livez", get(livez))
        .route("/openapi.json", get(openapi))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::front::guard))
        .layer(axum::middleware::from_fn(crate::telemetry::trace))
        .with_state(state)
}

/// The request body of `execute`: `script` (or a signed `package`),
/// optional `variables`, and any other top-level keys, which are request
/// parameters for `addParam`. Every piece is raw JSON borrowed from the body.
struct ExecuteRequest<'a> {
    program: Program,
    variables: Option<&'a RawValue>,
    params: Vec<(Cow<'a, str>, &'a RawValue)>,
}

enum Program {
    Script(String),
    /// Base64 of a signed AVAP package whose payload is the script.
    Package(String),
}

/// The body's top-level fields, after the one-pass check. Nothing is built
/// into a tree.
fn json_object(body: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, ApiError> {
    boundary::validate(body, MAX_JSON_DEPTH)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    boundary::top_level_fields(body).map_err(|_| ApiError::bad_request("request body must be a JSON object"))
}

fn take<'a>(fields: &mut Vec<(Cow<'a, str>, &'a RawValue)>, name: &str) -> Option<&'a RawValue> {
    let at = fields.iter().position(|(k, _)| k == name)?;
    Some(fields.remove(at).1)
}

fn non_empty_string(value: Option<&RawValue>, field: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = value else { return Ok(None) };
    if boundary::kind(raw) != Kind::String {
        return Err(ApiError::bad_request(format!("\"{field}\" must be a string")));
    }
    let s: String = serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_request(format!("\"{field}\": {e}")))?;
    if s.trim().is_empty() {
        return Err(ApiError::bad_request(format!("\"{field}\" is empty")));
    }
    Ok(Some(s))
}

fn parse_execute_body(body: &[u8]) -> Result<ExecuteRequest<'_>, ApiError> {
    let mut params = json_object(body)?;
    let script = non_empty_string(take(&mut params, "script"), "script")?;
    let package = non_empty_string(take(&mut params, "package"), "package")?;
    let program = match (script, package) {
        (Some(script), None) => Program::Script(script),
        (None, Some(package)) => Program::Package(package),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give either \"script\" or \"package\", not both")),
        (None, None) => return Err(ApiError::bad_request("missing \"script\" field (or a signed \"package\")")),
    };
    let variables = match take(&mut params, "variables") {
        None => None,
        Some(raw) => match boundary::kind(raw) {
            Kind::Null => None,
            Kind::Object => Some(raw),
            _ => return Err(ApiError::bad_request("\"variables\" must be a JSON object")),
        },
    };
    Ok(ExecuteRequest { program, variables, params })
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Reads the body within the front door's caps, counting refusals.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<crate::front::HeldBody, ApiError> {
    state.front.read_body(headers, body).await.inspect_err(|e| state.metrics.reject(e.outcome()))
}

/// Verifies a base64 signed package and returns its script. A package that
/// fails verification is never run.
fn open_package(state: &AppState, encoded: &str) -> Result<String, ApiError> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|e| ApiError::bad_request(format!("\"package\" is not valid base64: {e}")))?;
    // Packages are signed under their own key (never a catalog entry's);
    // with --original-servers also those the original servers signed.
    let mut verified = Err(avap_wire::package::PackageError::BadSignature);
    for key in state.trust.keys.packages_accepted() {
        verified = avap_wire::package::verify(key, &bytes);
        if verified.is_ok() {
            break;
        }
    }
    let payload = verified.map_err(|e| {
        state.metrics.reject(Outcome::Integrity);
        ApiError::new(Outcome::Integrity, format!("package refused, not executed: {e}"))
    })?;
    String::from_utf8(payload.to_vec())
        .map_err(|_| ApiError::bad_request("the package's payload is not UTF-8 AVAP source"))
}

/// Runs one guest document behind the gate, counting it. The live state is
/// the one taken when the request started: the catalog goes into the input
/// only when the runner does not hold it already.
async fn run_in_sandbox(
    state: &Arc<AppState>,
    live: &Live,
    input: &mut GuestInput<'_>,
) -> Result<(Execution, String), ApiError> {
    let waited = Instant::now();
    let permit = state.gate.enter().instrument(crate::inner_span!("queue")).await;
    state.metrics.observe_queue_wait(waited.elapsed().as_secs_f64());
    let _permit = permit.map_err(|e| sandbox_error(state, e))?;
    let _active = state.metrics.active_guard();
    let guest = live.runner.clone();
    if guest.is_prepared() {
        input.catalog = None;
    }
    let started = Instant::now();
    let result = state.run_guest(&guest, input).await;
    state.metrics.observe_duration(started.elapsed().as_secs_f64());
    // A new guest's probation counts the runs the interpreter itself
    // failed: here a failed run, in `decode` a run's output.
    if let Err(e) = &result {
        let fault = matches!(Outcome::of_sandbox(e), Outcome::GuestCrash | Outcome::Internal);
        state.record_execution(&live.guest.info().digest, fault);
    }
    let execution = result.map_err(|e| sandbox_error(state, e))?;
    Ok((execution, guest.info().version.clone()))
}

/// Reads the guest's output document; a document off the ABI is the
/// guest's fault (502).
fn decode<'a>(state: &Arc<AppState>, live: &Live, execution: &'a Execution) -> Result<GuestOutput<'a>, ApiError> {
    let output = boundary::decode_output(&execution.output);
    state.record_execution(&live.guest.info().digest, output.is_err());
    output.map_err(|e| sandbox_error(state, SandboxError::GuestAbi(format!("malformed output document: {e}"))))
}

/// A guest failure document as an error response: 400 with the guest's
/// kind, or 507 when the guest refused to write past the host's output cap.
fn script_error(state: &AppState, output: GuestOutput<'_>) -> ApiError {
    let outcome = if output.hit_output_cap() {
        Outcome::OutputTooLarge
    } else {
        output.kind.map_or(Outcome::RuntimeError, Outcome::of_script)
    };
    state.metrics.request(outcome);
    let mut err = ApiError::new(outcome, output.error.unwrap_or_else(|| "script failed".into()));
    if let Some(line) = output.line {
        err.extra.push(("line", Extra::Number(line.into())));
    }
    for (name, raw) in [("diagnostics", output.diagnostics), ("logs", output.logs)] {
        if let Some(raw) = raw {
            err.extra.push((name, Extra::Raw(raw.to_owned())));
        }
    }
    err
}

/// The success response of `execute`, written from the guest's raw pieces.
#[derive(Serialize)]
struct ExecuteResponse<'a> {
    success: bool,
    result: &'a RawValue,
    variables: &'a RawValue,
    logs: &'a RawValue,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logs_truncated: bool,
    usage: Usage,
}

#[derive(Serialize)]
struct Usage {
    fuel: u64,
    duration_ms: f64,
}

/// The guest's log array with what it wrote to stdout and stderr appended.
fn logs_with_streams(logs: Option<&RawValue>, execution: &Execution) -> Result<Box<RawValue>, serde_json::Error> {
    let logs = logs.map_or("[]", RawValue::get).trim_end();
    let inner = logs.strip_suffix(']').unwrap_or("[");
    let mut text = inner.to_string();
    let mut empty = inner.trim_end().ends_with('[');
    for (stream, bytes) in [("stdout", &execution.stdout), ("stderr", &execution.stderr)] {
        if bytes.is_empty() {
            continue;
        }
        if !empty {
            text.push(',');
        }
        empty = false;
        text.push_str(&serde_json::to_string(&json!({ "stream": stream, "text": String::from_utf8_lossy(bytes) }))?);
    }
    text.push(']');
    RawValue::from_string(text)
}

async fn execute(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&state, &headers, body).await?;
    let request = parse_execute_body(&body).inspect_err(|e| state.metrics.reject(e.outcome()))?;
    let script = match request.program {
        Program::Script(script) => script,
        Program::Package(encoded) => open_package(&state, &encoded)?,
    };
    let live = state.live();
    let query = query_pairs(query.as_deref());
    let mut input = GuestInput {
        script: &script,
        variables: request.variables,
        query: &query,
        body: (!request.params.is_empty()).then_some(RawFields(&request.params)),
        catalog: live.catalog.guest_json.as_deref(),
        mode: None,
        limits: state.limits.guest(),
    };
    let (execution, guest_version) = run_in_sandbox(&state, &live, &mut input).await?;
    let output = decode(&state, &live, &execution)?;
    if !output.ok {
        return Err(script_error(&state, output));
    }
    state.metrics.request(Outcome::Ok);
    let status = output.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let logs = logs_with_streams(output.logs, &execution).map_err(|e| internal("writing the logs", e))?;
    let empty = RawValue::from_string("{}".into()).map_err(|e| internal("an empty object", e))?;
    let body = ExecuteResponse {
        success: true,
        result: output.result.unwrap_or(&empty),
        variables: output.variables.unwrap_or(&empty),
        logs: &logs,
        logs_truncated: output.logs_truncated,
        usage: Usage { fuel: execution.fuel_used, duration_ms: execution.duration.as_micros() as f64 / 1000.0 },
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&guest_version) {
        response.headers_mut().insert(GUEST_VERSION_HEADER, v);
    }
    response.extensions_mut().insert(crate::telemetry::AccessInfo {
        kind: Outcome::Ok.kind(),
        fuel: Some(execution.fuel_used),
        guest_version: Some(guest_version),
    });
    Ok(response)
}

/// Response header naming the guest version that ran the script.
pub const GUEST_VERSION_HEADER: &str = "x-avap-guest-version";

/// `POST /api/v1/compile` with `{"name", "script"}`: parse and validate in
/// the guest; 400 with every diagnostic, or 200 with a signed package of the
/// script that `execute` accepts as `{"package": ...}`.
async fn compile(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let body = read_body(&state, &headers, body).await?;
    let mut fields = json_object(&body).inspect_err(|e| state.metrics.reject(e.outcome()))?;
    let script = non_empty_string(take(&mut fields, "script"), "script")?
        .ok_or_else(|| ApiError::bad_request("missing \"script\" field"))?;
    let name = match take(&mut fields, "name") {
        Some(raw) if boundary::kind(raw) == Kind::Null => "script".to_string(),
        None => "script".to_string(),
        raw => non_empty_string(raw, "name")
            .map_err(|_| ApiError::bad_request("\"name\" must be a non-empty string"))?
            .unwrap_or_else(|| "script".into()),
    };
    if name.chars().count() > crate::compile_store::MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "\"name\" is longer than {} characters",
            crate::compile_store::MAX_NAME_CHARS
        )));
    }
    let live = state.live();
    let mut input = GuestInput {
        catalog: live.catalog.guest_json.as_deref(),
        ..GuestInput::bare(&script, Some(Mode::Check), state.limits.guest())
    };
    let (execution, _) = run_in_sandbox(&state, &live, &mut input).await?;
    let output = decode(&state, &live, &execution)?;
    if !output.ok {
        return Err(script_error(&state, output));
    }
    state.metrics.request(Outcome::Compiled);
    let access = crate::telemetry::AccessInfo {
        kind: Outcome::Compiled.kind(),
        fuel: Some(execution.fuel_used),
        guest_version: Some(live.guest.info().version.clone()),
    };
    let package = avap_wire::package::pack(state.trust.keys.package(), script.as_bytes())
        .map_err(|e| internal("signing a package", e))?;
    let stored = match &state.compile_store {
        None => false,
        Some(store) => {
            // The guard let the request in, so it has a principal.
            let owner = state.front.principal(&headers).ok_or_else(ApiError::unauthorized)?;
            match store.store(&name, &script, &package, &owner).await {
                Ok(()) => true,
                Err(e @ crate::compile_store::StoreError::OwnedByAnother(_)) => {
                    return Err(ApiError::new(Outcome::Conflict, format!("{e}: compile it under another name")));
                }
                Err(e) => return Err(internal("storing the compiled package", e)),
            }
        }
    };
    let mut response = axum::Json(json!({
        "success": true,
        "name": name,
        "package": BASE64.encode(&package),
        "hash": avap_wire::catalog::entry_hash(&package),
        "diagnostics": [],
        "commands": output.commands.unwrap_or_default(),
        "functions": output.functions.unwrap_or_default(),
        "stored": stored,
    }))
    .into_response();
    response.extensions_mut().insert(access);
    Ok(response)
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(Outcome::Internal, "internal error")
}

/// Maps a sandbox outcome to a response (WIRE.md section 3) and counts it.
fn sandbox_error(state: &AppState, err: SandboxError) -> ApiError {
    let outcome = Outcome::of_sandbox(&err);
    match outcome {
        Outcome::Busy => {
            state.metrics.reject(outcome);
            return ApiError::busy("all execution slots are busy; retry shortly");
        }
        Outcome::Internal => {
            state.metrics.request(outcome);
            return internal("sandbox", err);
        }
        Outcome::GuestCrash => tracing::warn!(error = %err, "guest failed"),
        _ => {}
    }
    state.metrics.request(outcome);
    let message = match outcome {
        Outcome::GuestCrash => "the interpreter crashed on this script".to_string(),
        _ => err.to_string(),
    };
    ApiError::new(outcome, message)
}

/// `/openapi.json`: the HTTP API ([`openapi::document`]), built once.
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| match serde_json::to_vec(&openapi::document()) {
        Ok(v) => v.into(),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            bytes::Bytes::new()
        }
    });
    if text.is_empty() {
        return internal("the OpenAPI document", "empty").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response()
}

/// `/`: a permanent redirect to `/health`, as the original server answered
/// (301, so probes written for it follow it the same way).
async fn to_health() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/health")]).into_response()
}

/// `/livez`: the process answers. Needs no token.
async fn livez() -> impl IntoResponse {
    axum::Json(json!({"status": "alive"}))
}

/// `/readyz`: 200 when this host should get traffic, 503 with the reason
/// otherwise ([`AppState::readiness`]). Needs no token.
async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match state.readiness() {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(reason) => {
            // The sync error names addresses and certificates: only for a
            // caller with the token (or when none is configured), as in /health.
            let reason = if state.front.authorized(&headers) { reason } else { state.readiness_brief() };
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "not_ready", "reason": reason})))
                .into_response()
        }
    }
}

/// `/health`: every detail for a caller with the token (or when no token is
/// configured); just the status otherwise, so probes need no secret.
async fn health(State(state): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    if state.front.authorized(&headers) {
        return axum::Json(health::detail(&state));
    }
    let mut brief = Map::new();
    brief.insert("status".into(), Value::from("healthy"));
    brief.insert("service".into(), Value::from("avap-host"));
    brief.insert("detail".into(), Value::from("send the API token (Authorization: Bearer) for details"));
    axum::Json(Value::Object(brief))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_body_keeps_extra_keys_as_raw_params() {
        let r = parse_execute_body(br#"{"script":"addVar(a,1)","variables":{"x":1},"name":"Ann","n":2.50}"#)
            .expect("valid");
        assert!(matches!(r.program, Program::Script(ref s) if s == "addVar(a,1)"));
        assert_eq!(r.variables.map(RawValue::get), Some(r#"{"x":1}"#));
        let params: Vec<(&str, &str)> = r.params.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(params, [("name", "\"Ann\""), ("n", "2.50")]);
    }

    #[test]
    fn execute_body_errors_say_what_is_wrong() {
        let deep = format!(r#"{{"script":"x","variables":{{"a":{}1{}}}}}"#, "[".repeat(99), "]".repeat(99));
        for (body, needle) in [
            (&b"{"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "missing \"script\""),
            (br#"{"script":"  \n "}"#, "empty"),
            (br#"{"script":5}"#, "must be a string"),
            (br#"{"script":"x","variables":[1]}"#, "\"variables\" must be"),
            (br#"{"script":"x","package":"QUJD"}"#, "not both"),
            (br#"{"script":"a","script":"b"}"#, "duplicate key"),
            (deep.as_bytes(), "nested deeper than 100 levels"),
            (b"\xef\xbb\xbf{\"script\":\"x\"}", "not valid JSON"),
        ] {
            let err = parse_execute_body(body).err().expect("rejected");
            assert_eq!(err.outcome.status(), StatusCode::BAD_REQUEST);
            assert!(err.message.contains(needle), "{} should contain {needle}", err.message);
        }
    }

    /// Runs `script` through the router of a standalone host built from `config`.
    async fn execute_with(config: crate::Config, script: &str) -> (StatusCode, Value) {
        use tower::ServiceExt as _;
        let state = AppState::new(&config).await.expect("state");
        let request = axum::http::Request::post("/api/v1/execute")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "script": script }).to_string()))
            .expect("request");
        let response = router(state).oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    /// `n` variables of `10 << doublings` bytes each, all in the result.
    fn big_output(n: usize, doublings: u32) -> String {
        let mut script = format!("s = \"0123456789\"\nstartLoop(i, 1, {doublings})\n  s = s + s\nendLoop()\n");
        for k in 0..n {
            script.push_str(&format!("v{k} = s\naddResult(v{k})\n"));
        }
        script
    }

    #[tokio::test]
    async fn the_guest_keeps_to_the_hosts_output_cap() {
        let config = |max_output_bytes| crate::Config {
            standalone: true,
            dev: true,
            capabilities: Default::default(),
            max_output_bytes,
            ..crate::Config::defaults()
        };
        // About 80 KiB of result (twice that with the variables): over a
        // 64 KiB cap, the guest answers the small failure and the host 507.
        let (status, body) = execute_with(config(64 << 10), &big_output(1, 13)).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert_eq!(body["kind"], "output_too_large");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("max_output_bytes (65536)")), "{body}");
        // About 5 MiB of output: past the guest's own default (4 MiB), within
        // the host's default cap (8 MiB), so it is answered.
        let (status, body) = execute_with(config(crate::Config::defaults().max_output_bytes), &big_output(4, 16)).await;
        assert_eq!(status, StatusCode::OK, "{}", &body.to_string()[..200.min(body.to_string().len())]);
        assert_eq!(body["result"]["v3"].as_str().map(str::len), Some(10 << 16));
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
