//! The error response: an [`Outcome`] (its status and `kind`), a message
//! for the client, and what else the client needs (the failing line, the
//! diagnostics, `Retry-After`, `WWW-Authenticate`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;

use super::Outcome;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) outcome: Outcome,
    pub(crate) message: String,
    pub(crate) extra: Vec<(&'static str, Extra)>,
}

#[derive(Debug)]
pub(crate) enum Extra {
    Number(u64),
    Raw(Box<RawValue>),
}

impl ApiError {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        ApiError { outcome, message: message.into(), extra: Vec::new() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(Outcome::BadRequest, message)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        ApiError::new(Outcome::TooLarge, format!("request body exceeds the limit of {limit} bytes"))
    }

    pub(crate) fn busy(message: &str) -> Self {
        ApiError::new(Outcome::Busy, message)
    }

    pub(crate) fn body_timeout(limit: std::time::Duration) -> Self {
        ApiError::new(Outcome::BodyTimeout, format!("the request body did not arrive within {} ms", limit.as_millis()))
    }

    pub(crate) fn cross_origin(message: String) -> Self {
        ApiError::new(Outcome::CrossOrigin, message)
    }

    pub(crate) fn misdirected_host(host: &str) -> Self {
        ApiError::new(
            Outcome::MisdirectedHost,
            format!(
                "this host listens on loopback and answers only loopback names (localhost, 127.0.0.1, [::1]), not '{}'",
                host.chars().take(100).collect::<String>()
            ),
        )
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(Outcome::Unauthorized, "this host needs an API token: Authorization: Bearer <token>")
    }

    /// How this request ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The `kind` of this error, for tests and logs.
    pub fn kind(&self) -> &'static str {
        self.outcome.kind()
    }
}

impl Serialize for ApiError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("success", &false)?;
        map.serialize_entry("error", &self.message)?;
        map.serialize_entry("kind", self.kind())?;
        for (k, v) in &self.extra {
            match v {
                Extra::Number(n) => map.serialize_entry(k, n)?,
                Extra::Raw(raw) => map.serialize_entry(k, raw)?,
            }
        }
        map.end()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.outcome.status(), axum::Json(&self)).into_response();
        response
            .extensions_mut()
            .insert(crate::telemetry::AccessInfo { kind: self.outcome.kind(), ..Default::default() });
        let headers = response.headers_mut();
        match self.outcome {
            Outcome::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            Outcome::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
