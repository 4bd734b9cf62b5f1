//! Logs and request ids: what an operator reads.
//!
//! - The log format is `AVAP_LOG_FORMAT`: `text` (the default; no colour
//!   codes unless standard output is a terminal) or `json` (one object per
//!   line: `timestamp`, `level`, `target`, `fields`, and `span` with the
//!   request's `request_id`), filtered by `RUST_LOG` (default `info`).
//! - Every request gets an id ([`trace`]): the client's `x-request-id` when
//!   it sends a usable one (1 to 128 visible ASCII characters), else a new
//!   UUID. It is echoed in the response's `x-request-id` and carried by
//!   every log line written while the request is served.
//! - One access line per request (target `avap::access`): method, path,
//!   status, `kind`, duration, and for executions the fuel used and the
//!   guest version.

use std::io::IsTerminal as _;
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The response header (and request header) carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest client-given request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// `AVAP_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the process's log subscriber.
pub fn init(format: LogFormat) {
    init_with(format, std::io::stdout, std::io::stdout().is_terminal());
}

/// Installs a log subscriber writing to `writer` (tests capture the JSON
/// lines with it). Does nothing if one is installed already.
pub fn init_with<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    // Already installed (a test binary's second server): keep the first.
    drop(installed);
}

/// What a handler tells the access log about its response.
#[derive(Debug, Clone, Default)]
pub struct AccessInfo {
    /// The outcome's `kind` (`ok`, `syntax_error`, `busy`, ...).
    pub kind: &'static str,
    pub fuel: Option<u64>,
    pub guest_version: Option<String>,
}

/// The client's request id if usable, else a new one.
fn request_id(request: &Request) -> HeaderValue {
    let given = request.headers().get(REQUEST_ID_HEADER).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
    });
    match given {
        Some(v) => v.clone(),
        None => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    }
}

/// The outermost layer: gives the request its id and span, echoes the id,
/// writes the access line.
pub async fn trace(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    let info = response.extensions().get::<AccessInfo>().cloned().unwrap_or_default();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            target: "avap::access",
            status,
            kind = if info.kind.is_empty() { "ok" } else { info.kind },
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            fuel = info.fuel,
            guest_version = info.guest_version.as_deref(),
            "request"
        )
    });
    response
}
