//! `avap dev DIR`: each `DIR/name.avap` at `POST /name` (and `GET /name`),
//! for an edit-run loop. Every request reads the file as it is on disk, so
//! a saved change is live at once; a watcher reports each change with its
//! diagnostics, and rebuilds the `--catalog` folder when it changes.
//!
//! The scripts run in the host's own router and sandbox in this process
//! ([`crate::local`]); the request's query string and JSON body fields are
//! the script's parameters and `variables`, as with `/api/v1/execute`, and
//! the answer is the host's, status included. This server is for one
//! developer's machine: it listens on 127.0.0.1 unless `--bind` says
//! otherwise, and it has no tokens or front-door caps of its own beyond a
//! 1 MiB body.
//!
//! Any web page open in the developer's browser can send requests to
//! loopback, and a GET from an `<img>` or a link carries no `Origin`. So
//! before any route runs ([`guard`], on every route), a request is refused
//! when:
//! - its `Host` does not name the loopback address it listens on (DNS
//!   rebinding): 421 `misdirected_host`;
//! - its `Origin` is not this server's own: 403 `cross_origin`;
//! - its `Sec-Fetch-Site` is anything but `same-origin` or `none` (the
//!   browser says another site, `same-site` included, asked for it): 403
//!   `cross_origin`;
//! - it has no `Sec-Fetch-Site` but a browser's `User-Agent`: a browser too
//!   old to send fetch metadata, or one talking to a `--bind` address that
//!   is neither loopback nor HTTPS (browsers send fetch metadata only to
//!   those), whose cross-site GET cannot be told from the developer's own:
//!   403 `cross_origin`.
//!
//! What remains is what the developer sends: curl and other HTTP tools
//! (which send no fetch metadata), the address bar (`none`) and pages of
//! this server's own origin. GET still runs scripts, for the address bar
//! and for scripts that read their parameters from the query string; the
//! rules above are what make that safe.
//!
//! On a loopback address, `GET /` from a browser is the console
//! ([`crate::console`]): a page to edit, check, format and run the scripts
//! and call them through forms built from `/openapi.json`
//! ([`crate::openapi`]), updated live as files change. Its API lives under
//! `/api/console/` behind the same guard.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use avap_lang::diagnostics::{diagnose, render};
use avap_lang::reference::Commands;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::console::{self, Console};
use crate::local::{Grants, Local, capability_hints, execute_body};

#[derive(clap::Args)]
pub struct DevArgs {
    /// The folder of scripts: `name.avap` answers at `/name`.
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub grants: Grants,
}

const MAX_BODY_BYTES: usize = 1 << 20;
/// How often the folder is looked at for changes.
const WATCH_EVERY: Duration = Duration::from_millis(300);

pub struct Dev {
    pub dir: PathBuf,
    pub local: Local,
    /// What the server was started with (the console shows it).
    pub grants: Grants,
    /// What diagnostics know: the standard commands and the catalog's.
    commands: std::sync::RwLock<Commands>,
    /// The port listened on; `loopback`: whether `Host` must name loopback.
    port: u16,
    loopback: bool,
    /// The console's events and runs.
    pub console: Console,
    /// Held by a save from the console, between its check and its write.
    pub saving: tokio::sync::Mutex<()>,
}

impl Dev {
    /// Why a request is refused before anything runs, if it is: it names
    /// another server (DNS rebinding) or a page of another site sent it.
    fn refusal(&self, headers: &HeaderMap) -> Option<Refusal> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if self.loopback {
            let port = self.port;
            let allowed = ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .any(|name| host == *name || host == format!("{name}:{port}"));
            if !allowed {
                let shown: String = host.chars().take(100).collect();
                return Some(Refusal {
                    status: StatusCode::MISDIRECTED_REQUEST,
                    kind: "misdirected_host",
                    why: format!("this server answers only 127.0.0.1:{port} and localhost:{port}, not Host '{shown}'"),
                });
            }
        }
        let cross_site = |why: String| {
            Some(Refusal {
                status: StatusCode::FORBIDDEN,
                kind: "cross_origin",
                why: format!(
                    "{why}; web pages cannot run scripts here (use curl or another HTTP tool, or the address bar)"
                ),
            })
        };
        if let Some(origin) = headers.get(header::ORIGIN)
            && origin.to_str().ok() != Some(format!("http://{host}").as_str())
        {
            let shown: String = String::from_utf8_lossy(origin.as_bytes()).chars().take(100).collect();
            return cross_site(format!("a request from a page of another origin (Origin: {shown})"));
        }
        match headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase()) {
            Some(site) if site == b"same-origin" || site == b"none" => None,
            Some(site) => {
                let shown: String = String::from_utf8_lossy(&site).chars().take(40).collect();
                cross_site(format!("a request from a page of another site (Sec-Fetch-Site: {shown})"))
            }
            None if is_browser(headers) => cross_site(
                "a browser that sends no Sec-Fetch-Site, whose requests cannot be told from those a page of \
                 another site makes it send (a current browser sends it)"
                    .into(),
            ),
            None => None,
        }
    }

    /// The standard commands and the catalog's, as they are now.
    pub fn known_commands(&self) -> Commands {
        self.commands.read().map(|c| c.clone()).unwrap_or_else(|_| Commands::standard())
    }

    fn report(&self, name: &str) {
        report(&self.dir, name, &self.known_commands());
    }
}

/// Whether the request says it comes from a web browser. Every current
/// browser sends `Sec-Fetch-Site` (Chromium 76, Firefox 90, Safari 16.4);
/// they all name themselves `Mozilla/5.0 ...`, which HTTP tools do not.
fn is_browser(headers: &HeaderMap) -> bool {
    headers.get(header::USER_AGENT).is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"))
}

/// Refuses what a page in a browser could have sent ([`Dev::refusal`]),
/// before any route reads a body or runs a script.
async fn guard(State(dev): State<Arc<Dev>>, request: Request, next: Next) -> Response {
    match dev.refusal(request.headers()) {
        Some(Refusal { status, kind, why }) => {
            eprintln!("avap dev: refused {} {}: {kind}: {why}", request.method(), request.uri().path());
            problem(status, kind, why)
        }
        None => next.run(request).await,
    }
}

/// A request turned away before any route: its status, `kind` and reason.
struct Refusal {
    status: StatusCode,
    kind: &'static str,
    why: String,
}

/// A script name is a file stem of letters, digits, `_` and `-`: nothing
/// else can reach the file system.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn problem(status: StatusCode, kind: &str, error: String) -> Response {
    (status, Json(json!({"success": false, "kind": kind, "error": error}))).into_response()
}

pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a folder", args.dir.display());
    }
    let local = Local::start(&args.grants).await?;
    let commands = match &args.grants.catalog {
        Some(dir) => Commands::with_catalog(dir).map(|(c, _)| c).unwrap_or_else(|_| Commands::standard()),
        None => Commands::standard(),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dev = Arc::new(Dev {
        dir: args.dir.clone(),
        local,
        grants: args.grants.clone(),
        commands: std::sync::RwLock::new(commands),
        port: addr.port(),
        loopback: args.bind.is_loopback(),
        console: Console::new(stopped),
        saving: tokio::sync::Mutex::new(()),
    });
    let mut app = axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/openapi.json", axum::routing::get(openapi))
        .route("/{name}", axum::routing::post(run).get(run));
    // The console writes files: only for this machine's own browser.
    if dev.loopback {
        app = app.merge(console::router());
    }
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(dev.clone(), guard))
        .with_state(dev.clone());
    if !args.bind.is_loopback() {
        eprintln!("avap dev: warning: listening on {addr}, beyond this machine, with no authentication");
    }
    let mut seen = scripts(&dev.dir);
    for name in seen.keys() {
        dev.report(name);
    }
    println!("avap dev: serving {} on http://{addr}/ (POST /<name> runs <name>.avap)", dev.dir.display());
    if dev.loopback {
        println!("avap dev: console: open http://{addr}/ in a browser");
    }
    tokio::spawn(watch(dev.clone(), args.grants.catalog.clone(), std::mem::take(&mut seen)));
    let shutdown = async move {
        avap_host::shutdown_signal().await;
        // Pages' event streams end, so the shutdown waits for no one.
        let _ = stop.send(true);
    };
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `GET /`: the console for a browser (on loopback); else the scripts
/// served, as JSON.
async fn index(State(dev): State<Arc<Dev>>, headers: HeaderMap) -> Response {
    if dev.loopback && console::wants_page(&headers) {
        return console::page();
    }
    let names: Vec<String> = scripts(&dev.dir).into_keys().map(|n| format!("/{n}")).collect();
    let mut response = Json(json!({"scripts": names})).into_response();
    response.headers_mut().insert(header::VARY, header::HeaderValue::from_static("accept"));
    response
}

/// `GET /openapi.json`: every script as `POST /name` ([`crate::openapi`]).
async fn openapi(State(dev): State<Arc<Dev>>) -> Response {
    let dir = dev.dir.clone();
    match tokio::task::spawn_blocking(move || crate::openapi::of_folder(&dir)).await {
        Ok(document) => Json(document).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("building the document: {e}")),
    }
}

async fn run(
    State(dev): State<Arc<Dev>>,
    UrlPath(name): UrlPath<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if !valid_name(&name) {
        return problem(StatusCode::NOT_FOUND, "not_found", format!("no script named {name:?}"));
    }
    let path = dev.dir.join(format!("{name}.avap"));
    let script = match tokio::fs::read_to_string(&path).await {
        Ok(script) => script,
        Err(e) => return problem(StatusCode::NOT_FOUND, "not_found", format!("{}: {e}", path.display())),
    };
    let mut params = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(fields)) => fields,
            _ => {
                return problem(StatusCode::BAD_REQUEST, "bad_request", "the body must be a JSON object".into());
            }
        }
    };
    let variables = match params.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v,
        Some(_) => {
            return problem(StatusCode::BAD_REQUEST, "bad_request", "\"variables\" must be a JSON object".into());
        }
    };
    let body = match execute_body(&script, variables, params) {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    match dev.local.execute(&body, query.as_deref()).await {
        Ok((status, value)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            eprintln!("avap dev: {name}: {}", status.as_u16());
            for hint in capability_hints(&value) {
                eprintln!("avap dev: {hint}");
            }
            (status, Json(value)).into_response()
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{e:#}")),
    }
}

pub type Stamp = (Option<SystemTime>, u64);

/// Every `name.avap` of `dir` with a valid name, and when it last changed.
pub fn scripts(dir: &Path) -> BTreeMap<String, Stamp> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_stem()?.to_str()?.to_string();
            let meta = e.metadata().ok()?;
            (path.extension()? == "avap" && valid_name(&name) && meta.is_file())
                .then(|| (name, (meta.modified().ok(), meta.len())))
        })
        .collect()
}

/// Says whether `name.avap` is ready, with its diagnostics.
fn report(dir: &Path, name: &str, commands: &Commands) {
    let path = dir.join(format!("{name}.avap"));
    let Ok(source) = std::fs::read_to_string(&path) else { return };
    let diags = diagnose(&source, commands);
    if diags.is_empty() {
        eprintln!("avap dev: /{name}: ok");
    }
    for d in diags {
        eprint!("{}", render(&path.display().to_string(), &source, &d));
    }
}

fn catalog_stamp(dir: &Path) -> BTreeMap<String, Stamp> {
    scripts(dir)
}

/// Reports every added, changed or removed script; rebuilds the catalog
/// when its folder changes.
async fn watch(dev: Arc<Dev>, catalog: Option<PathBuf>, mut seen: BTreeMap<String, Stamp>) {
    let mut catalog_seen = catalog.as_deref().map(catalog_stamp);
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let now = scripts(&dev.dir);
        for (name, stamp) in &now {
            if seen.get(name) != Some(stamp) {
                eprintln!("avap dev: reloaded {name}.avap");
                dev.report(name);
                if let Ok(source) = crate::run::read_capped(&dev.dir.join(format!("{name}.avap"))) {
                    let version = console::version(&source);
                    dev.console.publish(console::Event::Changed { name: name.clone(), version });
                }
            }
        }
        for name in seen.keys().filter(|n| !now.contains_key(*n)) {
            eprintln!("avap dev: /{name}: removed");
            dev.console.publish(console::Event::Removed { name: name.clone() });
        }
        seen = now;
        if let (Some(dir), Some(before)) = (catalog.as_deref(), catalog_seen.as_mut()) {
            let stamp = catalog_stamp(dir);
            if stamp != *before {
                *before = stamp;
                match dev.local.load_catalog(dir).await {
                    Ok(()) => {
                        if let (Ok((commands, _)), Ok(mut known)) = (Commands::with_catalog(dir), dev.commands.write())
                        {
                            *known = commands;
                        }
                        eprintln!("avap dev: catalog {} reloaded", dir.display());
                        dev.console.publish(console::Event::Commands);
                    }
                    Err(e) => eprintln!("avap dev: catalog {} not reloaded: {e:#}", dir.display()),
                }
            }
        }
    }
}
