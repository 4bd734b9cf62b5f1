//! The host's router on its own, no socket: `avap_host::api::router(state)`
//! answers one request at a time (`oneshot`), so each HTTP edge case is
//! checked where it is decided: routes and methods, the content type, the
//! request body's shape and size, tokens and what `/health` tells whom.
//! (The same front door through real sockets: `security/`.)

use avap_host::{AppState, Config};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::common::config;

const SCRIPT: &str = "addVar(a, 1)\naddResult(a)";

async fn router(config: Config) -> Router {
    avap_host::api::router(AppState::new(&config).await.expect("host state"))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("the router answers every request");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.expect("the response body");
    Answer { status: parts.status, headers: parts.headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("a valid request")
}

fn execute(headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    request(Method::POST, "/api/v1/execute", headers, body)
}

fn script_body() -> String {
    json!({"script": SCRIPT}).to_string()
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405() {
    let app = router(config(|_| {})).await;
    for (method, uri) in [(Method::GET, "/nope"), (Method::POST, "/api/v1/nope"), (Method::GET, "/api/v1/execute/x")] {
        let answer = send(&app, request(method.clone(), uri, &[], Body::empty())).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {uri}: {}", answer.text);
    }
    for (method, uri, allow) in [
        (Method::GET, "/api/v1/execute", "POST"),
        (Method::PUT, "/api/v1/compile", "POST"),
        (Method::POST, "/health", "GET,HEAD"),
        (Method::DELETE, "/metrics", "GET,HEAD"),
    ] {
        let answer = send(&app, request(method.clone(), uri, &[], script_body())).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {}", answer.text);
        let allowed = answer.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(allowed.replace(' ', ""), allow, "{method} {uri}");
    }
}

/// The body is JSON whatever the client calls it; only a browser's
/// cross-site request is refused (before its body is read).
#[tokio::test]
async fn json_is_read_whatever_the_content_type() {
    let app = router(config(|_| {})).await;
    for content_type in [None, Some("application/json"), Some("text/plain"), Some("application/x-www-form-urlencoded")]
    {
        let headers: Vec<_> = content_type.map(|t| ("content-type", t)).into_iter().collect();
        let answer = send(&app, execute(&headers, script_body())).await;
        assert_eq!(answer.status, StatusCode::OK, "{content_type:?}: {}", answer.text);
        assert_eq!(answer.json()["result"], json!({"a": 1}), "{content_type:?}");
    }
    let answer =
        send(&app, execute(&[("content-type", "text/plain"), ("sec-fetch-site", "cross-site")], script_body())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert_eq!(answer.json()["kind"], "cross_origin");
}

#[tokio::test]
async fn a_body_without_a_script_gets_400_saying_what_is_wrong() {
    let app = router(config(|_| {})).await;
    for (body, needle) in [
        (json!({}).to_string(), "missing \"script\" field"),
        (json!({"variables": {}}).to_string(), "missing \"script\" field"),
        (json!({"script": "   "}).to_string(), "\"script\" is empty"),
        (json!({"script": 5}).to_string(), "\"script\" must be a string"),
        (json!({"script": SCRIPT, "variables": [1]}).to_string(), "\"variables\" must be a JSON object"),
        ("{not json".to_string(), "not valid JSON"),
        ("[1]".to_string(), "must be a JSON object"),
        (String::new(), "not valid JSON"),
    ] {
        let answer = send(&app, execute(&[("content-type", "application/json")], body.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        let json = answer.json();
        assert_eq!((&json["success"], &json["kind"]), (&json!(false), &json!("bad_request")), "{body}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| e.contains(needle)), "{body}: {json} lacks {needle:?}");
    }
    let answer = send(&app, request(Method::POST, "/api/v1/compile", &[], json!({"name": "x"}).to_string())).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert_eq!(answer.json()["kind"], "bad_request");
}

/// Over `max_body_bytes`, declared or not: 413 before anything runs, and
/// the host goes on serving.
#[tokio::test]
async fn an_oversized_body_gets_413() {
    let app = router(config(|c| c.max_body_bytes = 1024)).await;
    let big = json!({"script": format!("addVar(a, \"{}\")", "x".repeat(2048))}).to_string();
    let declared = big.len().to_string();
    let answer = send(&app, execute(&[("content-length", &declared)], big.clone())).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text);
    assert_eq!(answer.json()["kind"], "too_large");
    // No length declared: the body is counted as it arrives.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        big.as_bytes().chunks(256).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let answer = send(&app, execute(&[], Body::from_stream(tokio_stream::iter(chunks)))).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text);
    assert_eq!(answer.json()["kind"], "too_large");
    let answer = send(&app, execute(&[], script_body())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// Probes written for the original server: `GET /` redirects to
/// `/health` (301, as it answered), which says `healthy` and names the
/// service, with or without tokens configured.
#[tokio::test]
async fn the_root_redirects_to_health_as_the_original_did() {
    for app in [router(config(|_| {})).await, router(config(|c| c.api_tokens = "t0ken".parse().expect("list"))).await] {
        let answer = send(&app, request(Method::GET, "/", &[], Body::empty())).await;
        assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY, "{}", answer.text);
        assert_eq!(answer.headers.get("location").and_then(|v| v.to_str().ok()), Some("/health"));
        let health = send(&app, request(Method::GET, "/health", &[], Body::empty())).await.json();
        assert_eq!((&health["status"], &health["service"]), (&json!("healthy"), &json!("avap-host")), "{health}");
        if health.get("catalog").is_some() {
            // The built-in catalog counts its commands (it said 0).
            assert_eq!(
                (&health["catalog"]["source"], &health["catalog"]["commands"]),
                (&json!("built-in"), &json!(27))
            );
        }
    }
}

/// With tokens configured: probes get a brief `/health`, a caller with a
/// token every detail; execution and metrics need the token.
#[tokio::test]
async fn health_is_brief_without_the_token_and_detailed_with_it() {
    let app = router(config(|c| c.api_tokens = "t0ken-one,t0ken-two".parse().expect("list"))).await;
    let health = |auth: Option<&'static str>| {
        let headers: Vec<_> = auth.map(|a| ("authorization", a)).into_iter().collect();
        request(Method::GET, "/health", &headers, Body::empty())
    };
    for auth in [None, Some("Bearer wrong"), Some("t0ken-one")] {
        let answer = send(&app, health(auth)).await;
        assert_eq!(answer.status, StatusCode::OK, "{auth:?}");
        let json = answer.json();
        let keys: Vec<_> = json.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(keys, ["status", "service", "detail"], "{auth:?}: {json}");
        assert_eq!(json["status"], "healthy");
    }
    for auth in ["Bearer t0ken-one", "Bearer t0ken-two"] {
        let json = send(&app, health(Some(auth))).await.json();
        assert_eq!(json["status"], "healthy", "{json}");
        assert_eq!(json["front_door"]["tokens_required"], json!(true), "{json}");
        assert!(json["guest"]["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{json}");
        assert!(json["limits"].is_object() && json["capabilities"].is_object(), "{json}");
        assert!(!json.to_string().contains("t0ken"), "a token is shown: {json}");
    }
    let answer = send(&app, execute(&[], script_body())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert_eq!(answer.json()["kind"], "unauthorized");
    assert_eq!(answer.headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()), Some("Bearer"));
    let answer = send(&app, execute(&[("authorization", "Bearer t0ken-two")], script_body())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let answer = send(&app, request(Method::GET, "/metrics", &[], Body::empty())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    let metrics = request(Method::GET, "/metrics", &[("authorization", "Bearer t0ken-one")], Body::empty());
    let answer = send(&app, metrics).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.text.contains("avap_rejects_total{reason=\"unauthorized\"} 2"), "{}", answer.text);
}
