//! The front door: everything between a TCP connection and a handler.
//!
//! - **Connections**: at most `max_connections` open at once (the host stops
//!   accepting at the cap; the kernel queues the rest), each served by
//!   hyper's HTTP/1 with a header-read timeout that also reaps idle
//!   keep-alive connections, and header size capped. A client that stops
//!   reading what it is sent (a write makes no progress for the header
//!   timeout) is disconnected too, so no connection outlives its use.
//! - **Bodies**: read only after the request passed the checks below, within
//!   `body_timeout`, at most `max_body_bytes` each (413). Every body byte the
//!   host holds, from its arrival to the end of its request, counts against
//!   `max_inflight_body_bytes`: many slow or large uploads cannot add up
//!   beyond it (a request waits for room within the body timeout, else 503).
//! - **Cross-site requests**: a browser's cross-origin request (an `Origin`
//!   not in `AVAP_CORS_ORIGINS`, or `Sec-Fetch-Site: cross-site`) is refused
//!   with 403 before its body is read; CORS preflights are answered for the
//!   allowed origins only. Clients that are not browsers send neither header
//!   and are not affected, whatever their `Content-Type`.
//! - **Names**: a host listening on loopback answers only requests whose
//!   `Host` is a loopback name (`localhost`, `*.localhost`, a loopback
//!   address), with 421 otherwise: a page whose name a DNS rebinding
//!   points at 127.0.0.1 cannot read `/health`, `/metrics` or run scripts.
//! - **Tokens**: with `AVAP_API_TOKENS` set, `execute`, `compile`,
//!   `/metrics` and the details of `/health` need `Authorization: Bearer
//!   <token>`; tokens are compared in constant time (as SHA-256 digests, so
//!   their length does not leak either).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::api::ApiError;
use crate::state::AppState;

/// Settings of the front door (flags in `config.rs`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrontConfig {
    #[serde(rename = "header_timeout_ms", serialize_with = "ser_ms")]
    pub header_timeout: Duration,
    #[serde(rename = "body_timeout_ms", serialize_with = "ser_ms")]
    pub body_timeout: Duration,
    pub max_connections: u32,
    pub max_body_bytes: usize,
    pub max_inflight_body_bytes: usize,
    /// Origins whose browser requests are allowed (`https://app.example.com`).
    pub cors_origins: Vec<String>,
    /// Whether bearer tokens are required (the tokens themselves are not shown).
    #[serde(rename = "tokens_required")]
    #[serde(serialize_with = "ser_present")]
    pub api_tokens: Vec<String>,
    /// How long shutdown waits for executions in flight (`AVAP_DRAIN_SECS`).
    #[serde(rename = "drain_timeout_ms", serialize_with = "ser_ms")]
    pub drain_timeout: Duration,
    /// Listening on loopback: only requests for loopback names are answered.
    pub loopback_names_only: bool,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

fn ser_present<S: serde::Serializer>(tokens: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(!tokens.is_empty())
}

impl Default for FrontConfig {
    /// The built-in defaults ([`crate::Config::defaults`]).
    fn default() -> Self {
        crate::Config::defaults().front()
    }
}

/// Largest request head (request line and headers) read, in bytes.
pub use avap_serve::MAX_HEAD_BYTES;
/// The body budget is counted in units of this many bytes.
const BUDGET_UNIT: usize = 1024;

/// The front door's state: its settings, the token digests, the body budget.
pub struct FrontDoor {
    pub config: FrontConfig,
    token_digests: Vec<[u8; 32]>,
    body_budget: Arc<Semaphore>,
}

impl FrontDoor {
    pub fn new(config: FrontConfig) -> Self {
        let token_digests = config.api_tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()).collect();
        let units = config.max_inflight_body_bytes.div_ceil(BUDGET_UNIT).max(1);
        let units = units.min(Semaphore::MAX_PERMITS);
        FrontDoor { config, token_digests, body_budget: Arc::new(Semaphore::new(units)) }
    }

    pub fn tokens_required(&self) -> bool {
        !self.token_digests.is_empty()
    }

    /// Whether the request carries one of the tokens (always, when none is
    /// configured).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        self.token_digests.is_empty() || self.matching_token(headers).is_some()
    }

    /// Who the caller is, for what it stores: `token:<first 16 hex digits
    /// of the SHA-256 of its token>`, or `anonymous` on a host without
    /// tokens (every caller is then the same principal). `None`: not
    /// authorized.
    pub fn principal(&self, headers: &HeaderMap) -> Option<String> {
        if self.token_digests.is_empty() {
            return Some("anonymous".into());
        }
        self.matching_token(headers).map(|d| format!("token:{}", hex::encode(&d[..8])))
    }

    /// The digest of the configured token the request carries.
    fn matching_token(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        // Every digest is compared, so the time does not say which matched.
        let hit = self.token_digests.iter().fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest));
        bool::from(hit).then_some(digest)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.config.cors_origins.iter().any(|o| o == origin)
    }

    /// Reads a request body within the size cap, the body timeout and the
    /// shared budget. The budget is taken as the bytes arrive and held by
    /// the returned body until it is dropped.
    pub async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<HeldBody, ApiError> {
        let max = self.config.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(ApiError::too_large(max));
        }
        let timeout = self.config.body_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let units = |bytes: usize| u32::try_from(bytes.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX);
        let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
        let mut held = 0u32;
        let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(max));
        let mut body = body;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return Err(ApiError::body_timeout(timeout)),
            };
            let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if out.len() + data.len() > max {
                return Err(ApiError::too_large(max));
            }
            let need = units(out.len() + data.len()).saturating_sub(held);
            if need > 0 {
                let more = tokio::time::timeout_at(deadline, self.body_budget.clone().acquire_many_owned(need))
                    .await
                    .map_err(|_| ApiError::busy("too many request bodies are being received; retry shortly"))?
                    .map_err(|_| ApiError::busy("the server is shutting down"))?;
                match &mut budget {
                    Some(permit) => permit.merge(more),
                    None => budget = Some(more),
                }
                held += need;
            }
            out.extend_from_slice(&data);
        }
        Ok(HeldBody { bytes: Bytes::from(out), _budget: budget })
    }
}

/// A request body, and its share of the body budget until it is dropped.
#[derive(Debug)]
pub struct HeldBody {
    bytes: Bytes,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for HeldBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Refuses cross-site browser requests and answers CORS preflights, before
/// any handler (or body read); then checks the token on the routes that
/// need one.
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let front = &state.front;
    let headers = request.headers();
    if front.config.loopback_names_only {
        let host = headers.get(header::HOST).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(host) = host.filter(|h| !is_loopback_name(h)) {
            state.metrics.reject(crate::api::Outcome::MisdirectedHost);
            return ApiError::misdirected_host(&host).into_response();
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cross_site = headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let preflight = request.method() == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed_origin = match &origin {
        Some(o) if front.origin_allowed(o) => Some(o.clone()),
        Some(o) => {
            state.metrics.reject(crate::api::Outcome::CrossOrigin);
            return ApiError::cross_origin(format!(
                "requests from origin '{}' are not allowed (AVAP_CORS_ORIGINS)",
                o.chars().take(100).collect::<String>()
            ))
            .into_response();
        }
        None if cross_site || preflight => {
            state.metrics.reject(crate::api::Outcome::CrossOrigin);
            return ApiError::cross_origin("cross-site requests are not allowed".into()).into_response();
        }
        None => None,
    };
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(o) = &allowed_origin {
            cors_headers(response.headers_mut(), o);
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-request-id"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        return response;
    }
    let path = request.uri().path();
    let needs_token = path.starts_with("/api/") || path == "/metrics";
    if needs_token && !front.authorized(request.headers()) {
        state.metrics.reject(crate::api::Outcome::Unauthorized);
        return ApiError::unauthorized().into_response();
    }
    let mut response = next.run(request).await;
    if let Some(o) = &allowed_origin {
        cors_headers(response.headers_mut(), o);
    }
    response
}

/// Whether a `Host` header (`name[:port]`) names this machine's loopback:
/// `localhost`, a name under `.localhost` (which browsers resolve to
/// loopback themselves), or a loopback address (`127.0.0.1`, `[::1]`). No
/// resolver is asked: a name is judged by what it is, not by where some
/// DNS server points it today.
pub fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => v6,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || (lower.ends_with(".localhost") && lower.len() > ".localhost".len())
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn cors_headers(headers: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    headers
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-request-id, x-avap-guest-version"));
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests: the connection cap, header timeout,
/// stall limit and bounded drain of [`avap_serve::serve_http1`], which the
/// brain's ports use too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &FrontConfig,
    open: prometheus_client::metrics::gauge::Gauge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = avap_serve::Limits {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        drain_timeout: config.drain_timeout,
    };
    avap_serve::serve_http1(
        listener,
        app,
        &limits,
        move |delta| {
            open.inc_by(delta);
        },
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let door =
            FrontDoor::new(FrontConfig { api_tokens: vec!["s3cret".into(), "other".into()], ..Default::default() });
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
            h
        };
        assert!(door.authorized(&with("Bearer s3cret")));
        assert!(door.authorized(&with("Bearer other")));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "] {
            assert!(!door.authorized(&with(wrong)), "{wrong}");
        }
        assert!(!door.authorized(&HeaderMap::new()));
        assert!(FrontDoor::new(FrontConfig::default()).authorized(&HeaderMap::new()));
    }

    #[test]
    fn loopback_names_are_judged_by_what_they_are() {
        for ok in [
            "localhost",
            "LOCALHOST:8888",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.9.9.9:1",
            "[::1]",
            "[::1]:8888",
            "app.localhost:3000",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8888",
            "localhost.attacker.example",
            ".localhost",
            "10.0.0.1:8888",
            "[::2]:8888",
            "[::1]x",
            "127.0.0.1:80:80",
            "localhost:http",
            "",
            "0.0.0.0:8888",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_full_body_budget_turns_a_request_away_after_the_body_timeout() {
        let door = FrontDoor::new(FrontConfig {
            max_body_bytes: 4096,
            max_inflight_body_bytes: 4096,
            body_timeout: Duration::from_millis(100),
            ..Default::default()
        });
        let held = door.body_budget.clone().acquire_many_owned(4).await.expect("the whole budget");
        let started = std::time::Instant::now();
        let err = door.read_body(&HeaderMap::new(), Body::from("{}")).await.expect_err("no budget");
        assert_eq!(err.kind(), "busy");
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(held);
        let body = door.read_body(&HeaderMap::new(), Body::from("{}")).await.expect("budget free");
        assert_eq!(&body[..], b"{}");
        // The body holds its share until it is dropped.
        assert_eq!(door.body_budget.available_permits(), 3);
        drop(body);
        assert_eq!(door.body_budget.available_permits(), 4);
    }
}
