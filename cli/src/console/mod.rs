//! The console: a page in the browser, built into `avap dev`, for the
//! edit-run-call loop (docs/CLI.md, "The console").
//!
//! The page is plain HTML, CSS and JavaScript (`cli/console/`), embedded in
//! the binary with `include_str!` and served from it: nothing comes from a
//! CDN, and `cargo build` needs no network and no npm. Its highlighter is
//! driven by the editors' own TextMate grammar, embedded the same way, so
//! the page and the editors cannot disagree on what a line is.
//!
//! Everything the page does goes through the JSON API below, under
//! `/api/console/` (a prefix no script or endpoint can take: script names
//! have no `/`, and endpoints may not live under `/api/`):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` (`Accept: text/html`) | the page; tools still get the JSON list of scripts |
//! | `GET assets/{file}` | the page's script, style and the grammar |
//! | `GET info` | the folder, the caps (fuel, time, memory), what is granted |
//! | `GET scripts`, `GET scripts/{name}` | the folder's scripts; one's source and version |
//! | `PUT scripts/{name}` | saves a script, refused (409) if the file changed since the page read it |
//! | `POST check`, `POST format` | `avap check`'s diagnostics; `avap fmt`'s layout |
//! | `POST run`, `POST runs/{id}/cancel` | runs the editor's text in the host's sandbox; stops a run |
//! | `GET commands` | the standard and catalog commands with their documentation |
//! | `GET events` | server-sent events: a script saved, added or removed; the catalog reloaded |
//!
//! The page and its API are mounted only when `avap dev` listens on a
//! loopback address, behind the same guard as every other route
//! ([`crate::dev`]: no other site's page, no rebound host name). Besides,
//! every response says: no framing by another page (`frame-ancestors
//! 'none'`, so a page cannot get clicks on Run or Save through a frame of
//! this origin), scripts and styles from this origin only, no sniffing, no
//! caching. Writes need `Content-Type: application/json`, which a form on
//! another page cannot send without a CORS preflight this server never
//! answers.

mod api;

pub use api::version;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

use crate::dev::{Dev, problem};

/// The page and its assets, from `cli/console/`.
const INDEX_HTML: &str = include_str!("../../console/index.html");
const CONSOLE_JS: &str = include_str!("../../console/console.js");
const HIGHLIGHT_JS: &str = include_str!("../../console/highlight.js");
const CONSOLE_CSS: &str = include_str!("../../console/console.css");
/// The editors' TextMate grammar: the page highlights with these rules.
const GRAMMAR_JSON: &str = include_str!("../../../editors/vscode/syntaxes/avap.tmLanguage.json");

/// Pages open on the event stream at once; more get 503.
const MAX_SUBSCRIBERS: usize = 32;
/// Runs in flight that can be cancelled by id; more get 503 (the host's
/// own gate caps how many execute at once).
const MAX_RUNS: usize = 64;

/// What the page is told when it happens (`GET events`).
#[derive(Debug, Clone)]
pub enum Event {
    /// `name.avap` was added or saved; its new version.
    Changed { name: String, version: String },
    /// `name.avap` is gone.
    Removed { name: String },
    /// The catalog folder was reloaded: the commands changed.
    Commands,
}

/// The console's share of `avap dev`'s state.
pub struct Console {
    events: broadcast::Sender<Event>,
    /// Set when the server shuts down: event streams end, so the graceful
    /// shutdown does not wait for pages that never close.
    stop: watch::Receiver<bool>,
    subscribers: Arc<AtomicUsize>,
    /// Runs in flight by id, each with what cancels it.
    runs: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Console {
    /// A console whose event streams end when `stop` turns true.
    pub fn new(stop: watch::Receiver<bool>) -> Console {
        Console {
            events: broadcast::channel(256).0,
            stop,
            subscribers: Arc::new(AtomicUsize::new(0)),
            runs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Tells every open page (none listening is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Registers a run that `cancel(id)` can stop, until the slot drops.
    fn start_run(&self, id: &str) -> Result<RunSlot, Problem> {
        let mut runs = self.runs.lock().map_err(|_| Problem::internal("the run table"))?;
        if runs.contains_key(id) {
            return Err(Problem::new(StatusCode::CONFLICT, "conflict", format!("a run with id {id:?} is in flight")));
        }
        if runs.len() >= MAX_RUNS {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("{MAX_RUNS} runs are in flight"),
            ));
        }
        let cancel = Arc::new(Notify::new());
        runs.insert(id.to_string(), cancel.clone());
        Ok(RunSlot { runs: self.runs.clone(), id: id.to_string(), cancel })
    }

    /// Stops the run `id`; whether there was one.
    fn cancel(&self, id: &str) -> bool {
        let runs = self.runs.lock().map(|r| r.get(id).cloned()).ok().flatten();
        runs.map(|n| n.notify_one()).is_some()
    }
}

/// A run in flight; dropping it forgets its id.
struct RunSlot {
    runs: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    id: String,
    cancel: Arc<Notify>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(&self.id);
        }
    }
}

/// An error answer of the console, in the host's shape
/// (`{"success": false, "kind", "error"}`).
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    error: String,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, error: String) -> Problem {
        Problem { status, kind, error }
    }

    fn internal(what: &str) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{what} is unusable"))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        problem(self.status, self.kind, self.error)
    }
}

/// The console's routes, to merge into `avap dev`'s router (which puts its
/// guard in front of them).
pub fn router() -> Router<Arc<Dev>> {
    use axum::routing::{get, post};
    Router::new()
        .route("/api/console/assets/{file}", get(asset))
        .route("/api/console/info", get(api::info))
        .route("/api/console/scripts", get(api::scripts))
        .route("/api/console/scripts/{name}", get(api::script).put(api::save))
        .route("/api/console/check", post(api::check))
        .route("/api/console/format", post(api::format))
        .route("/api/console/run", post(api::run))
        .route("/api/console/runs/{id}/cancel", post(api::cancel))
        .route("/api/console/commands", get(api::commands))
        .route("/api/console/events", get(api::events))
        .layer(axum::middleware::from_fn(headers))
}

/// Whether `GET /` is a browser asking for a page (else the JSON list).
pub fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// `GET /` for a browser.
pub fn page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response();
    secure(response.headers_mut());
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "highlight.js" => (HIGHLIGHT_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        "avap.tmLanguage.json" => (GRAMMAR_JSON, "application/json"),
        _ => return problem(StatusCode::NOT_FOUND, "not_found", format!("no console asset {file:?}")),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Every console response: [`secure`].
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    secure(response.headers_mut());
    response
}

/// The headers that keep the page to itself: scripts, styles and requests
/// of this origin only, never inside another page's frame, no sniffing, no
/// caching (a rebuilt `avap` serves its new page at once).
fn secure(headers: &mut HeaderMap) {
    const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

impl Event {
    fn to_sse(&self) -> axum::response::sse::Event {
        let (kind, data) = match self {
            Event::Changed { name, version } => ("changed", json!({"name": name, "version": version})),
            Event::Removed { name } => ("removed", json!({"name": name})),
            Event::Commands => ("commands", Value::Object(Default::default())),
        };
        axum::response::sse::Event::default().event(kind).data(data.to_string())
    }
}

/// Counts an open event stream; dropping it frees the place.
struct Subscriber(Arc<AtomicUsize>);

impl Subscriber {
    fn enter(count: &Arc<AtomicUsize>) -> Option<Subscriber> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_SUBSCRIBERS).then_some(n + 1))
            .ok()
            .map(|_| Subscriber(count.clone()))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}
