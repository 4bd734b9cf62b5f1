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

/// The environment variable that turns span export on (the OTLP/HTTP
/// endpoint's base, e.g. `http://collector:4318`; spans go to
/// `<base>/v1/traces`). Plain `http://` only: the exporter's client has no TLS.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Keeps the span exporter alive; flushes it when dropped.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Flushes the background log writer when dropped.
    writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Sends every finished span now (tests; shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "cannot flush spans to the OTLP endpoint");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the process's log subscriber, and span export over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Lines go to standard output from
/// a background thread: a slow reader of the pipe never stalls a worker
/// (lines beyond its buffer are dropped, and counted by `tracing-appender`).
pub fn init(format: LogFormat) -> Telemetry {
    let endpoint = std::env::var(OTLP_ENDPOINT_ENV).ok().filter(|e| !e.trim().is_empty());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let mut telemetry = init_with(format, writer, std::io::stdout().is_terminal(), endpoint);
    telemetry.writer = Some(guard);
    telemetry
}

/// Installs a log subscriber writing to `writer` (tests capture the JSON
/// lines with it), exporting spans to `otlp` (an OTLP/HTTP base URL) when
/// given. Does nothing if a subscriber is installed already.
pub fn init_with<W>(format: LogFormat, writer: W, ansi: bool, otlp: Option<String>) -> Telemetry
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    };
    let provider = otlp.and_then(|base| {
        if !base.trim_start().starts_with("http://") {
            // The exporter's client has no TLS: an https endpoint would drop every span.
            eprintln!("avap-host: {OTLP_ENDPOINT_ENV}={base}: only http:// endpoints (a local collector); spans are not exported");
            return None;
        }
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(std::time::Duration::from_secs(5));
        let exporter = match exporter.build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("avap-host: OTLP span export off: {e}");
                return None;
            }
        };
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("avap-host").build();
        Some(
            opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    });
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("avap-host")));
    let installed = tracing_subscriber::registry().with(filter()).with(fmt).with(otel).try_init();
    if installed.is_err() {
        // A subscriber is installed already (a test binary's second server).
        return Telemetry { provider: None, writer: None };
    }
    Telemetry { provider, writer: None }
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
    // At ERROR level, so that the request id reaches every line a filter
    // keeps (RUST_LOG=warn included); the access line itself is INFO.
    let span = tracing::error_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    let status = response.status().as_u16();
    let info = response.extensions().get::<AccessInfo>().cloned().unwrap_or_else(|| AccessInfo {
        // Answered before any handler of ours (the router's 404 and 405).
        kind: match status {
            404 => "not_found",
            405 => "method_not_allowed",
            s if s < 400 => "ok",
            _ => "http_error",
        },
        ..AccessInfo::default()
    });
    span.in_scope(|| {
        tracing::info!(
            target: "avap::access",
            status,
            kind = info.kind,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            fuel = info.fuel,
            guest_version = info.guest_version.as_deref(),
            "request"
        )
    });
    response
}
