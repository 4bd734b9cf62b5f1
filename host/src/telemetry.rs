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

/// Keeps the span exporter alive; flushes it (and the log writer) when
/// dropped.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Writes what is left of the log buffer when dropped.
    writer: Option<batch::Flusher>,
}

impl Telemetry {
    /// Sends every finished span now (tests; shutdown), and writes the log
    /// lines still buffered.
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "cannot flush spans to the OTLP endpoint");
        }
        if let Some(w) = &self.writer {
            w.flush();
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
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Lines go to standard output in
/// batches from a background thread ([`batch`]): a worker never waits on
/// the pipe nor wakes another thread to write a line, and a slow reader of
/// the pipe costs only the lines beyond the buffer (dropped, and counted in
/// a line of their own).
pub fn init(format: LogFormat) -> Telemetry {
    let endpoint = std::env::var(OTLP_ENDPOINT_ENV).ok().filter(|e| !e.trim().is_empty());
    let (writer, flusher) = batch::writer(std::io::stdout(), batch::Settings::default());
    let mut telemetry = init_with(format, writer, std::io::stdout().is_terminal(), endpoint);
    telemetry.writer = Some(flusher);
    telemetry
}

/// The log writer: lines from every thread are appended to one buffer
/// under a short lock (no system call, no wake-up of another thread), and a
/// thread of its own writes the buffer out every [`Settings::every`], or as
/// soon as it holds [`Settings::soon_bytes`]. Past [`Settings::max_bytes`]
/// buffered (the reader of standard output is not keeping up) a line is
/// dropped rather than waited for; how many were is written as a line of
/// its own once there is room.
///
/// `tracing-appender`'s non-blocking writer, used before, handed each line
/// to its thread through a channel and woke it: at one access line per
/// request that was about a fifth of the host's CPU (docs/PERFORMANCE.md).
pub mod batch {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// When the buffer is written out, and how much it may hold.
    #[derive(Debug, Clone, Copy)]
    pub struct Settings {
        /// The longest a line waits to be written.
        pub every: Duration,
        /// Buffered bytes that get the writer woken at once.
        pub soon_bytes: usize,
        /// Buffered bytes past which lines are dropped.
        pub max_bytes: usize,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings { every: Duration::from_millis(50), soon_bytes: 256 << 10, max_bytes: 8 << 20 }
        }
    }

    struct Shared {
        buffer: Mutex<Vec<u8>>,
        wake: Condvar,
        dropped: AtomicU64,
        settings: Settings,
    }

    impl Shared {
        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
            self.buffer.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn push(&self, line: &[u8]) {
            let mut buffer = self.lock();
            if buffer.len() + line.len() > self.settings.max_bytes {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let before = buffer.len();
            buffer.extend_from_slice(line);
            let soon = self.settings.soon_bytes;
            drop(buffer);
            if before < soon && before + line.len() >= soon {
                self.wake.notify_one();
            }
        }

        /// Takes what is buffered (and the count of dropped lines) and writes it.
        fn write_out(&self, out: &mut dyn Write, spare: &mut Vec<u8>) {
            {
                let mut buffer = self.lock();
                std::mem::swap(&mut *buffer, spare);
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let _ =
                    writeln!(spare, "avap-host: {dropped} log lines dropped: standard output was not read fast enough");
            }
            if !spare.is_empty() {
                let _ = out.write_all(spare);
                let _ = out.flush();
                spare.clear();
            }
        }
    }

    /// What the subscriber writes through: one [`Line`] per event.
    #[derive(Clone)]
    pub struct Writer {
        shared: Arc<Shared>,
    }

    /// Keeps the writing thread's target; [`Flusher::flush`] writes the
    /// buffer now, and dropping it does too.
    pub struct Flusher {
        shared: Arc<Shared>,
        out: Arc<Mutex<Box<dyn Write + Send>>>,
    }

    impl Flusher {
        pub fn flush(&self) {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.write_out(&mut *out, &mut Vec::new());
        }
    }

    impl Drop for Flusher {
        fn drop(&mut self) {
            self.flush();
        }
    }

    /// A writer into the buffer and the flusher of `out`, with the thread
    /// that writes the buffer out (it lives as long as a writer does).
    pub fn writer(out: impl Write + Send + 'static, settings: Settings) -> (Writer, Flusher) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(settings.soon_bytes)),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            settings,
        });
        let out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(out)));
        let weak = Arc::downgrade(&shared);
        let target = out.clone();
        let spawned = std::thread::Builder::new().name("avap-log".into()).spawn(move || {
            let mut spare = Vec::with_capacity(settings.soon_bytes);
            while let Some(shared) = weak.upgrade() {
                {
                    let buffer = shared.lock();
                    if buffer.len() < settings.soon_bytes {
                        let _ = shared.wake.wait_timeout(buffer, settings.every);
                    }
                }
                let mut out = target.lock().unwrap_or_else(|p| p.into_inner());
                shared.write_out(&mut *out, &mut spare);
            }
        });
        if let Err(e) = spawned {
            // Without the thread the lines still go out at flush and exit.
            eprintln!("avap-host: cannot start the log writer thread ({e}); logs are written at exit only");
        }
        (Writer { shared: shared.clone() }, Flusher { shared, out })
    }

    /// One event's text, pushed whole into the buffer when dropped.
    pub struct Line {
        shared: Arc<Shared>,
        text: Vec<u8>,
    }

    impl Write for Line {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.text.extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Line {
        fn drop(&mut self) {
            if !self.text.is_empty() {
                self.shared.push(&self.text);
            }
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
        type Writer = Line;

        fn make_writer(&'a self) -> Line {
            Line { shared: self.shared.clone(), text: Vec::with_capacity(256) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Instant;

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);

        impl Write for Sink {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        fn line(writer: &Writer, text: &str) {
            use tracing_subscriber::fmt::MakeWriter as _;
            let mut w = writer.make_writer();
            // A formatter writes an event in pieces; the line arrives whole.
            for piece in text.as_bytes().chunks(3) {
                w.write_all(piece).expect("write");
            }
        }

        #[test]
        fn lines_from_many_threads_arrive_whole_and_within_the_period() {
            let sink = Sink::default();
            let settings = Settings { every: Duration::from_millis(20), ..Settings::default() };
            let (writer, flusher) = super::writer(sink.clone(), settings);
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let w = writer.clone();
                    std::thread::spawn(move || {
                        for i in 0..500 {
                            line(&w, &format!("thread {t} line {i} with some text\n"));
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().expect("thread"));
            let started = Instant::now();
            let count = || String::from_utf8_lossy(&sink.0.lock().expect("sink")).lines().count();
            while count() < 2000 {
                assert!(started.elapsed() < Duration::from_secs(2), "lines not written by the thread: {}", count());
                std::thread::sleep(Duration::from_millis(5));
            }
            let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
            for l in text.lines() {
                assert!(l.starts_with("thread ") && l.ends_with(" with some text"), "a torn line: {l:?}");
            }
            drop(flusher);
        }

        #[test]
        fn past_the_cap_lines_are_dropped_and_counted() {
            let sink = Sink::default();
            // A writer that never writes on its own within the test.
            let settings = Settings { every: Duration::from_secs(3600), soon_bytes: 1 << 30, max_bytes: 100 };
            let (writer, flusher) = super::writer(sink.clone(), settings);
            for i in 0..10 {
                line(&writer, &format!("line {i} of twenty bytes\n"));
            }
            flusher.flush();
            let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
            let kept = text.lines().filter(|l| l.starts_with("line ")).count();
            assert!(kept > 0 && kept < 10, "{text}");
            assert!(text.contains(&format!("{} log lines dropped", 10 - kept)), "{text}");
        }
    }
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
    EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    Telemetry { provider, writer: None }
}

/// Whether spans are exported (OTLP): the spans inside a request (queue,
/// instantiate, run, capability) exist only then. Log lines need only the
/// request's own span, which carries its id; the finer spans cost a few
/// microseconds a request that nothing would read.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the spans inside a request are made ([`inner_span!`]).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// An INFO span inside a request, made only when spans are exported
/// ([`exporting`]); `tracing::Span::none()` otherwise.
#[macro_export]
macro_rules! inner_span {
    ($($span:tt)*) => {
        if $crate::telemetry::exporting() { tracing::info_span!($($span)*) } else { tracing::Span::none() }
    };
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
