//! # avap-brain — the AVAP definition server
//!
//! Serves the command catalog over gRPC (`avap.DefinitionEngine`, see
//! `proto/avap.proto` and WIRE.md section 2), plus the standard gRPC health
//! service. The catalog is the 27 standard commands, the commands written in
//! AVAP found in an optional catalog folder, and the guest interpreter's wasm
//! module; every entry's code is a signed package (WIRE.md section 1).
//!
//! The folder is rescanned every poll interval; a changed folder is rebuilt
//! as a whole and published to `WatchCatalog` subscribers. A folder that
//! fails to build (a file that does not parse or cannot be read) keeps the
//! previous catalog and is reported by [`Brain::last_error`].
//!
//! Every catalog it publishes is sealed with a signed manifest whose serial
//! only grows (see `avap_wire::manifest`): hosts refuse an older one, so a
//! recorded catalog cannot be replayed, and a roll-back is a newer catalog
//! pinning an older guest. A manifest expires ([`BrainConfig::manifest_ttl`]);
//! the brain seals its catalog again under a new serial every quarter of
//! that, so a host whose catalog's manifest expired knows it has stopped
//! hearing from this brain, whatever keepalives reach it.
//!
//! Its ports take connections as the host's do ([`avap_serve`], [`net`]):
//! a cap, a handshake (or header) timeout, no busy accept loop.
//!
//! Trust (README "Roll-out"): the brain refuses to start with the published
//! default keys or without TLS unless told so: `dev` (development: default
//! keys, the published development guest key, plaintext), `original_servers`
//! (serving the original AVAP language servers, which hard-code the default
//! keys and verify entries with the shared secret itself), or
//! `allow_plaintext` for plaintext alone.
//!
//! Starting one in-process (tests):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let brain = avap_brain::Brain::new(avap_brain::BrainConfig::dev())?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(brain.clone().serve(listener, async move { let _ = stopped.await; }));
//! // ... connect a client to `url`, read brain.catalog() / brain.last_error() ...
//! let _ = stop.send(());
//! server.await??;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod catalog;
pub mod net;
pub mod ops;
pub mod python;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use avap_wire::auth::{
    AUTH_METADATA, CLIENT_METADATA, DEFAULT_API_KEY, DEFAULT_INTERNAL_KEY, HOST_CLIENT, key_matches,
};
use avap_wire::guest_sig::{GuestSigningKey, dev_signing_key};
use avap_wire::keys::{KeyScheme, Keys, MIN_API_KEY_BYTES, MIN_SECRET_BYTES, WeakKey, weak_key};
use avap_wire::pb::{
    CatalogResponse, CommandRequest, CommandResponse, DefinitionEngine, DefinitionEngineServer, Empty,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

pub use catalog::CatalogError;
use catalog::{Built, Fingerprint, Signer};

/// Largest request the server decodes (requests are a command name at most).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What the server needs besides its socket.
#[derive(Clone)]
pub struct BrainConfig {
    /// The catalog folder (`*.avap` commands, optional `guest-vm.wasm`);
    /// `None` serves the built-in default catalog.
    pub catalog_dir: Option<PathBuf>,
    /// The `x-avap-auth` token every `DefinitionEngine` call must carry.
    pub api_key: String,
    /// The HMAC key of the signed packages.
    pub internal_key: String,
    /// How often the catalog folder is rescanned (at least 1 ms).
    pub poll_interval: Duration,
    /// Development: the published default keys, the published development
    /// guest key (used when no other signs the guest) and plaintext gRPC
    /// are allowed. Never for a deployment.
    pub dev: bool,
    /// Serve the original AVAP language servers: entries signed with the
    /// shared secret itself (their scheme), default keys allowed.
    pub original_servers: bool,
    /// Signs guest modules that come without a `guest-vm.wasm.sig`.
    pub guest_signing_key: Option<Arc<GuestSigningKey>>,
    /// Serve TLS with this certificate (and require client certificates
    /// signed by `client_ca_pem` when given); `None` is plaintext.
    pub tls: Option<TlsConfig>,
    /// Plaintext gRPC without `dev` or `original_servers`.
    pub allow_plaintext: bool,
    /// How often an idle `WatchCatalog` stream gets a keepalive message.
    pub keepalive_interval: Duration,
    /// After shutdown begins, how long connections get to finish.
    pub drain: Duration,
    /// How long a manifest is valid; the catalog is sealed again (new
    /// serial, same entries) every quarter of this.
    pub manifest_ttl: Duration,
    /// A folder guest and its `.sig` that do not match are a copy in
    /// progress for this long (logged at info, the previous catalog
    /// stays); after it, a folder error.
    pub guest_pair_grace: Duration,
    /// TLS handshake and HTTP/2 preface (gRPC port), request headers (ops
    /// port): each connection must get this far within this time.
    pub header_timeout: Duration,
    /// gRPC connections open at once.
    pub max_connections: u32,
}

/// Connections the ops port holds open at once (probes and a scraper).
pub const OPS_MAX_CONNECTIONS: u32 = 64;
/// The longest manifest validity the brain takes.
pub const MAX_MANIFEST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The brain's TLS identity (PEM).
#[derive(Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by this CA (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl Default for BrainConfig {
    /// The published default keys, and none of the flags that allow them:
    /// [`Brain::new`] refuses this as it is. See [`BrainConfig::dev`].
    fn default() -> Self {
        BrainConfig {
            catalog_dir: None,
            api_key: DEFAULT_API_KEY.to_string(),
            internal_key: DEFAULT_INTERNAL_KEY.to_string(),
            poll_interval: Duration::from_millis(500),
            dev: false,
            original_servers: false,
            guest_signing_key: None,
            tls: None,
            allow_plaintext: false,
            keepalive_interval: Duration::from_secs(15),
            drain: Duration::from_secs(30),
            manifest_ttl: Duration::from_secs(3600),
            guest_pair_grace: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl BrainConfig {
    /// Development defaults: published keys, plaintext (`--dev`).
    pub fn dev() -> Self {
        BrainConfig { dev: true, ..BrainConfig::default() }
    }

    /// The entry-signing scheme these flags select.
    pub fn key_scheme(&self) -> KeyScheme {
        if self.original_servers { KeyScheme::Original } else { KeyScheme::Separated }
    }
}

impl std::fmt::Debug for BrainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrainConfig")
            .field("catalog_dir", &self.catalog_dir)
            .field("api_key", &"<redacted>")
            .field("internal_key", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
            .field("dev", &self.dev)
            .field("original_servers", &self.original_servers)
            .field("guest_signing_key", &self.guest_signing_key)
            .field("tls", &self.tls.is_some())
            .field("allow_plaintext", &self.allow_plaintext)
            .field("manifest_ttl", &self.manifest_ttl)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    /// The built-in catalog itself could not be built.
    #[error("cannot build the built-in catalog: {0:?}")]
    BuiltIn(Vec<CatalogError>),
    /// The gRPC server failed.
    #[error("gRPC server: {}", avap_wire::error_chain(.0))]
    Transport(#[from] tonic::transport::Error),
    /// A published default key without `dev` or `original_servers`.
    #[error(
        "{0} is the published default: anyone could sign catalogs or read them. Set your own, or pass --dev \
         (development) or --original-servers (talking to the original AVAP servers, which hard-code it)"
    )]
    DefaultKey(&'static str),
    /// No TLS without a flag that allows plaintext.
    #[error(
        "no TLS certificate (BRAIN_TLS_CERT, BRAIN_TLS_KEY): plaintext gRPC would hand every host's API key and \
         catalog to whoever is on the path. Give a certificate, or pass --allow-plaintext (or --dev / \
         --original-servers)"
    )]
    Plaintext,
    /// Both modes at once.
    #[error("--dev and --original-servers do not go together")]
    TwoModes,
    /// A key too short to be secret.
    #[error("{name} is {len} bytes: at least {min} are needed outside --dev / --original-servers")]
    ShortKey { name: &'static str, len: usize, min: usize },
    /// The published development guest key without `dev`.
    #[error("the guest signing key is the published development key; it signs only with --dev")]
    DevGuestKey,
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

struct Shared {
    config: BrainConfig,
    metrics: Arc<ops::BrainMetrics>,
    /// The TLS identity, when serving TLS.
    tls: Option<net::Tls>,
    keys: Keys,
    /// What signs guests without a `.sig` file: the configured key, or the
    /// development key with `dev`.
    guest_key: Option<Arc<GuestSigningKey>>,
    catalog: watch::Sender<Arc<CatalogResponse>>,
    /// Set once the server is shutting down: ends open `WatchCatalog` streams.
    stopping: watch::Sender<bool>,
    state: Mutex<ScanState>,
}

#[derive(Default)]
struct ScanState {
    fingerprint: Option<Fingerprint>,
    last_error: Option<Arc<[CatalogError]>>,
    /// The last error as logged, so an unchanged error is logged once.
    last_logged: Option<String>,
    /// The content hash of the published catalog.
    content_hash: String,
    /// The published manifest's serial.
    serial: u64,
    /// The guest the published catalog pins (a roll-out change alone is a
    /// new catalog).
    guest: Option<avap_wire::manifest::GuestPin>,
    guest_signature: Option<String>,
    /// What is published, to seal again before its manifest expires.
    built: Option<Arc<Built>>,
    /// A folder whose only problem is a guest and `.sig` that do not match
    /// yet: since when, and whether it has been reported as an error.
    waiting: Option<Waiting>,
}

struct Waiting {
    since: std::time::Instant,
    reported: bool,
}

/// The next serial: past the last one and at least the current time in
/// milliseconds, so serials keep growing across restarts (given a clock
/// that does not go back).
fn next_serial(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    now.max(last.saturating_add(1))
}

fn total_count_of(catalog: &CatalogResponse) -> usize {
    catalog.commands.len()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// When a manifest sealed now with `ttl` expires (ms since the epoch).
fn expiry(ttl: Duration) -> u64 {
    avap_wire::manifest::now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// The definition server: a cheap handle (clone it freely) to the live
/// catalog, which is also the `DefinitionEngine` service implementation.
#[derive(Clone)]
pub struct Brain {
    shared: Arc<Shared>,
}

fn describe(errors: &[CatalogError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Records a catalog folder that did not build (`keeping` says what is
/// served meanwhile). A guest and `.sig` that do not match, and nothing
/// else wrong, is a roll-out being copied in: logged once at info as
/// waiting, not an error, until `guest_pair_grace` has passed.
fn refuse_folder(
    state: &mut ScanState,
    metrics: &ops::BrainMetrics,
    config: &BrainConfig,
    dir: &std::path::Path,
    errors: Vec<CatalogError>,
    keeping: &str,
) {
    let text = describe(&errors);
    if errors.iter().all(CatalogError::is_transient) {
        let waiting =
            state.waiting.get_or_insert_with(|| Waiting { since: std::time::Instant::now(), reported: false });
        if waiting.since.elapsed() < config.guest_pair_grace {
            let logged = format!("waiting: {text}");
            if state.last_logged.as_deref() != Some(logged.as_str()) {
                tracing::info!(folder = %dir.display(), grace = ?config.guest_pair_grace, "waiting for the guest module and its signature to match, {keeping}:\n{text}");
                state.last_logged = Some(logged);
            }
            metrics.guest_pair_waiting.set(1);
            // Not an error (yet): the served catalog is the last good one.
            state.last_error = None;
            return;
        }
        waiting.reported = true;
    } else if state.waiting.take().is_some() {
        metrics.guest_pair_waiting.set(0);
    }
    if state.last_logged.as_deref() != Some(text.as_str()) {
        tracing::error!(folder = %dir.display(), "catalog folder rejected, {keeping}:\n{text}");
        state.last_logged = Some(text);
    }
    if state.last_error.is_none() {
        metrics.refusals.inc();
    }
    state.last_error = Some(errors.into());
}

impl Brain {
    /// Builds the first catalog. If the folder's catalog does not build, the
    /// server starts with the built-in default and reports the error (the
    /// folder is still watched, so fixing it publishes the full catalog).
    pub fn new(mut config: BrainConfig) -> Result<Brain, BrainError> {
        config.poll_interval = config.poll_interval.max(Duration::from_millis(1));
        config.keepalive_interval = config.keepalive_interval.max(Duration::from_millis(10));
        config.manifest_ttl = config.manifest_ttl.clamp(Duration::from_millis(100), MAX_MANIFEST_TTL);
        config.header_timeout = config.header_timeout.max(Duration::from_millis(10));
        if config.dev && config.original_servers {
            return Err(BrainError::TwoModes);
        }
        let allowed = config.dev || config.original_servers;
        let keys = [
            ("AVAP_INTERNAL_KEY", &config.internal_key, DEFAULT_INTERNAL_KEY, MIN_SECRET_BYTES),
            ("API_KEY", &config.api_key, DEFAULT_API_KEY, MIN_API_KEY_BYTES),
        ];
        for (name, value, published, min) in keys {
            match weak_key(value, published, min) {
                Some(WeakKey::Published) if allowed => tracing::warn!(
                    "!!! {name} is the published default key: allowed only because of --dev / --original-servers !!!"
                ),
                Some(WeakKey::Published) => return Err(BrainError::DefaultKey(name)),
                Some(WeakKey::Short { len, min }) if !allowed => return Err(BrainError::ShortKey { name, len, min }),
                _ => {}
            }
        }
        if !config.dev && config.guest_signing_key.as_ref().is_some_and(|k| k.public() == dev_signing_key().public()) {
            return Err(BrainError::DevGuestKey);
        }
        if config.tls.is_none() && !(allowed || config.allow_plaintext) {
            return Err(BrainError::Plaintext);
        }
        let tls = match &config.tls {
            None => {
                tracing::warn!(
                    "serving plaintext gRPC: hosts' API keys and the catalog travel unencrypted and unauthenticated"
                );
                None
            }
            Some(t) => {
                let tls =
                    net::Tls::from_pem(&t.cert_pem, &t.key_pem, t.client_ca_pem.as_deref()).map_err(BrainError::Tls)?;
                if tls.names.is_empty() {
                    tracing::warn!(
                        "the TLS certificate has no subjectAltName: hosts check the name they connect to against \
                         the certificate's subjectAltName only, so every host will refuse it"
                    );
                }
                tracing::info!(
                    names = %tls.names.join(", "),
                    not_after = %tls.not_after,
                    client_certificates = if tls.client_certificates { "required (BRAIN_TLS_CLIENT_CA)" } else { "not asked" },
                    "serving gRPC over TLS; hosts must connect to one of these names (BRAIN_TLS_DOMAIN, else BRAIN_HOST)"
                );
                Some(tls)
            }
        };
        if config.dev {
            tracing::warn!(
                "--dev: development mode (published keys, plaintext, the published development guest key); never for a deployment"
            );
        }
        if config.original_servers {
            tracing::warn!(
                "!!! --original-servers: catalog entries are signed with the shared secret itself, as the original AVAP servers expect !!!"
            );
        }
        let keys = Keys::new(config.internal_key.as_bytes(), config.key_scheme());
        let guest_key = config.guest_signing_key.clone().or_else(|| config.dev.then(|| Arc::new(dev_signing_key())));
        match &guest_key {
            Some(k) => {
                tracing::info!(key = %k.public().id(), "guest modules without a signature file are signed with this key")
            }
            None => {
                tracing::info!("no guest signing key: only a guest-vm.wasm with its guest-vm.wasm.sig is published")
            }
        }
        let metrics = Arc::new(ops::BrainMetrics::new());
        let mut state = ScanState::default();
        let signer = Signer { keys: &keys, guest_key: guest_key.as_deref() };
        let first = match config.catalog_dir.as_deref() {
            None => catalog::build(&signer, None).map_err(BrainError::BuiltIn)?,
            Some(dir) => {
                state.fingerprint = Fingerprint::of(dir);
                match catalog::build(&signer, Some(dir)) {
                    Ok(c) => c,
                    Err(errors) => {
                        refuse_folder(&mut state, &metrics, &config, dir, errors, "serving the built-in catalog");
                        catalog::build(&signer, None).map_err(BrainError::BuiltIn)?
                    }
                }
            }
        };
        state.serial = next_serial(0);
        state.content_hash = first.content_hash.clone();
        state.guest = first.guest.clone();
        state.guest_signature = first.guest_signature.clone();
        let sealed = catalog::seal_until(&keys, &first, state.serial, now_rfc3339(), expiry(config.manifest_ttl))
            .map_err(|e| BrainError::BuiltIn(vec![e]))?;
        state.built = Some(Arc::new(first));
        tracing::info!(version_hash = %sealed.version_hash, serial = state.serial, total_count = sealed.total_count, guest = ?state.guest, "catalog ready");
        let (catalog, _) = watch::channel(Arc::new(sealed));
        let (stopping, _) = watch::channel(false);
        metrics.published(total_count_of(&catalog.borrow()), state.serial);
        Ok(Brain {
            shared: Arc::new(Shared {
                config,
                metrics,
                tls,
                keys,
                guest_key,
                catalog,
                stopping,
                state: Mutex::new(state),
            }),
        })
    }

    /// The brain's metrics.
    pub fn metrics(&self) -> &ops::BrainMetrics {
        &self.shared.metrics
    }

    /// Serves `/livez`, `/readyz` and `/metrics` over HTTP on `listener`
    /// until `shutdown` completes ([`ops`]).
    pub async fn serve_http(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        let ready = self.clone();
        let metrics = self.clone();
        let app = axum::Router::new()
            .route("/livez", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "alive"})) }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let draining = ready.metrics().draining();
                    async move {
                        if draining {
                            let body = serde_json::json!({"status": "not_ready", "reason": "draining: the brain is shutting down"});
                            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
                        } else {
                            axum::Json(serde_json::json!({"status": "ready"})).into_response()
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let text = metrics.metrics().encode();
                    async move {
                        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                    }
                }),
            );
        let limits = avap_serve::Limits {
            header_timeout: self.shared.config.header_timeout,
            max_connections: OPS_MAX_CONNECTIONS,
            drain_timeout: self.shared.config.drain,
        };
        avap_serve::serve_http1(listener, app, &limits, |_| {}, shutdown).await
    }

    /// The serial of the catalog being served.
    pub fn serial(&self) -> u64 {
        self.state().serial
    }

    /// The catalog being served now.
    pub fn catalog(&self) -> Arc<CatalogResponse> {
        self.shared.catalog.borrow().clone()
    }

    /// A receiver that sees every newly published catalog.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CatalogResponse>> {
        self.shared.catalog.subscribe()
    }

    /// Whether the folder's guest module and its `.sig` do not match yet
    /// (a roll-out being copied in, within `guest_pair_grace`).
    pub fn waiting_for_guest_pair(&self) -> bool {
        self.state().waiting.as_ref().is_some_and(|w| !w.reported)
    }

    /// Why the catalog folder's current contents were rejected; `None` when
    /// the served catalog reflects the folder (or is waiting for a guest
    /// pair to match).
    pub fn last_error(&self) -> Option<Arc<[CatalogError]>> {
        self.state().last_error.clone()
    }

    fn state(&self) -> MutexGuard<'_, ScanState> {
        // The state stays consistent even if a holder panicked.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One poll of the catalog folder (blocking file I/O): rebuilds the
    /// catalog if the folder changed and publishes it if its version hash
    /// differs. Returns whether a new catalog was published.
    pub fn rescan(&self) -> bool {
        let Some(dir) = self.shared.config.catalog_dir.as_deref() else {
            return false;
        };
        let mut state = self.state();
        let fingerprint = Fingerprint::of(dir);
        let unchanged = fingerprint.is_some() && fingerprint == state.fingerprint;
        // A pair still waiting when its grace ends is looked at again, to
        // report it.
        let grace_over = state
            .waiting
            .as_ref()
            .is_some_and(|w| !w.reported && w.since.elapsed() >= self.shared.config.guest_pair_grace);
        if unchanged && !grace_over && !fingerprint.as_ref().is_some_and(Fingerprint::unsettled) {
            return false;
        }
        state.fingerprint = fingerprint;
        let signer = Signer { keys: &self.shared.keys, guest_key: self.shared.guest_key.as_deref() };
        match catalog::build(&signer, Some(dir)) {
            Err(errors) => {
                let config = &self.shared.config;
                refuse_folder(&mut state, &self.shared.metrics, config, dir, errors, "keeping the previous catalog");
                false
            }
            Ok(next) => {
                if state.last_error.take().is_some() {
                    tracing::info!(folder = %dir.display(), "catalog folder is valid again");
                }
                if state.waiting.take().is_some() {
                    tracing::info!(folder = %dir.display(), "the guest module and its signature match");
                    self.shared.metrics.guest_pair_waiting.set(0);
                }
                state.last_logged = None;
                if next.content_hash == state.content_hash
                    && next.guest == state.guest
                    && next.guest_signature == state.guest_signature
                {
                    return false;
                }
                self.publish(&mut state, Arc::new(next), false)
            }
        }
    }

    /// Seals the published catalog again under a new serial and a new
    /// expiry (same entries): what keeps hosts' manifests from expiring.
    pub fn reseal(&self) -> bool {
        let mut state = self.state();
        match state.built.clone() {
            Some(built) => self.publish(&mut state, built, true),
            None => false,
        }
    }

    /// Seals `next` under the next serial and publishes it (`again`: the
    /// same entries, sealed again before the manifest expires).
    fn publish(&self, state: &mut ScanState, next: Arc<Built>, again: bool) -> bool {
        let serial = next_serial(state.serial);
        let expires = expiry(self.shared.config.manifest_ttl);
        let sealed = match catalog::seal_until(&self.shared.keys, &next, serial, now_rfc3339(), expires) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot seal the catalog; keeping the previous one");
                return false;
            }
        };
        state.serial = serial;
        state.content_hash = next.content_hash.clone();
        state.guest = next.guest.clone();
        state.guest_signature = next.guest_signature.clone();
        if again {
            tracing::debug!(version_hash = %sealed.version_hash, serial, "catalog sealed again (same entries, new serial and expiry)");
        } else {
            tracing::info!(version_hash = %sealed.version_hash, serial, total_count = sealed.total_count, guest = ?next.guest, "new catalog published");
        }
        state.built = Some(next);
        self.shared.metrics.published(total_count_of(&sealed), serial);
        self.shared.catalog.send_replace(Arc::new(sealed));
        true
    }

    /// Seals the catalog again every quarter of the manifest's validity,
    /// until shutdown.
    async fn keep_sealed(self) {
        let mut stopping = self.shared.stopping.subscribe();
        let every = self.shared.config.manifest_ttl / 4;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            self.reseal();
        }
    }

    async fn poll_folder(self) {
        let mut stopping = self.shared.stopping.subscribe();
        let mut ticker = tokio::time::interval(self.shared.config.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let brain = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || brain.rescan()).await {
                tracing::error!("catalog rescan task failed: {e}");
            }
        }
    }

    /// Serves `avap.DefinitionEngine` (behind the `x-avap-auth` check) and
    /// `grpc.health.v1.Health` on `listener` until `shutdown` completes, and
    /// polls the catalog folder meanwhile. Open `WatchCatalog` streams end
    /// when `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), BrainError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status(avap_wire::SERVICE_NAME, tonic_health::ServingStatus::Serving).await;

        let poller = self.shared.config.catalog_dir.is_some().then(|| tokio::spawn(self.clone().poll_folder()));
        let sealer = tokio::spawn(self.clone().keep_sealed());
        let engine = DefinitionEngineServer::new(self.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
        let engine = InterceptedService::new(engine, auth_interceptor(&self.shared.config.api_key));
        let stopping = self.shared.stopping.clone();
        let drain = self.clone();
        let signal = async move {
            shutdown.await;
            // Probes first: the health service and /readyz say so at once.
            drain.shared.metrics.start_drain();
            reporter.set_service_status(avap_wire::SERVICE_NAME, tonic_health::ServingStatus::NotServing).await;
            reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            tracing::info!("draining: NOT_SERVING, watch streams end, calls in flight finish");
            stopping.send_replace(true);
        };
        // TLS is done below tonic, with the handshake deadline ([`net`]).
        let incoming = net::incoming(
            listener,
            avap_serve::Slots::new(self.shared.config.max_connections),
            self.shared.config.header_timeout,
            self.shared.tls.as_ref().map(|t| t.acceptor.clone()),
            self.shared.metrics.clone(),
            self.shared.stopping.subscribe(),
        );
        let serving = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .timeout(Duration::from_secs(60))
            .add_service(health)
            .add_service(engine)
            .serve_with_incoming_shutdown(incoming, signal);
        // tonic waits for every connection to close: bound it by the drain time.
        let mut fired = self.shared.stopping.subscribe();
        let drain = self.shared.config.drain;
        let result = tokio::select! {
            result = serving => result,
            () = async move {
                let _ = fired.wait_for(|s| *s).await;
                tokio::time::sleep(drain).await;
            } => {
                tracing::warn!(?drain, "connections still open after the drain time; stopping");
                Ok(())
            }
        };
        self.shared.stopping.send_replace(true);
        sealer.abort();
        if let Some(poller) = poller {
            poller.abort();
        }
        result.map_err(BrainError::from)
    }
}

/// Rejects every call whose `x-avap-auth` is not the API key
/// (constant-time comparison, see [`key_matches`]).
fn auth_interceptor(api_key: &str) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
    let api_key: Arc<str> = api_key.into();
    move |request: Request<()>| match request.metadata().get(AUTH_METADATA) {
        Some(token) if key_matches(&api_key, token.as_bytes()) => Ok(request),
        _ => Err(Status::unauthenticated(format!("missing or invalid {AUTH_METADATA}"))),
    }
}

/// Whether the caller is this project's host (`x-avap-client: avap-host`),
/// which gets the whole catalog. Any other client is taken for an original
/// language server: it gets [`original_view`].
fn is_host<T>(request: &Request<T>) -> bool {
    request.metadata().get(CLIENT_METADATA).is_some_and(|v| v.as_bytes() == HOST_CLIENT.as_bytes())
}

/// Whether an original language server can take `entry`: only `function`
/// entries (it compiles every payload as Python source, so a wasm module or
/// AVAP source would fail its whole sync).
fn original_can_take(entry: &CommandResponse) -> bool {
    entry.r#type == avap_wire::catalog::TYPE_FUNCTION
}

/// The catalog as an original language server can take it
/// ([`original_can_take`]), with `total_count` and `version_hash` over
/// those entries.
pub fn original_view(catalog: &CatalogResponse) -> CatalogResponse {
    let commands: Vec<CommandResponse> = catalog.commands.iter().filter(|c| original_can_take(c)).cloned().collect();
    CatalogResponse {
        total_count: i32::try_from(commands.len()).unwrap_or(i32::MAX),
        version_hash: avap_wire::catalog::version_hash(&commands),
        commands,
        keepalive: catalog.keepalive,
    }
}

/// The catalog a caller gets: whole for a host ([`is_host`]), else
/// [`original_view`].
fn view_for(host: bool, catalog: &CatalogResponse) -> CatalogResponse {
    if host { catalog.clone() } else { original_view(catalog) }
}

#[tonic::async_trait]
impl DefinitionEngine for Brain {
    async fn get_command(&self, request: Request<CommandRequest>) -> Result<Response<CommandResponse>, Status> {
        self.shared.metrics.call("GetCommand");
        let host = is_host(&request);
        let name = request.into_inner().name;
        let catalog = self.catalog();
        match catalog.commands.iter().find(|c| c.name == name && (host || original_can_take(c))) {
            Some(entry) => Ok(Response::new(entry.clone())),
            None => {
                let shown: String = name.chars().take(100).collect();
                Err(Status::not_found(format!("unknown command '{shown}'")))
            }
        }
    }

    async fn sync_catalog(&self, request: Request<Empty>) -> Result<Response<CatalogResponse>, Status> {
        self.shared.metrics.call("SyncCatalog");
        Ok(Response::new(view_for(is_host(&request), &self.catalog())))
    }

    type WatchCatalogStream = ReceiverStream<Result<CatalogResponse, Status>>;

    /// The current catalog at once, then every newly published one. A slow
    /// reader skips intermediate catalogs and gets the newest.
    async fn watch_catalog(&self, request: Request<Empty>) -> Result<Response<Self::WatchCatalogStream>, Status> {
        let host = is_host(&request);
        let (tx, rx) = mpsc::channel(1);
        let mut catalogs = self.subscribe();
        let mut stopping = self.shared.stopping.subscribe();
        let every = self.shared.config.keepalive_interval;
        self.shared.metrics.call("WatchCatalog");
        let watcher = ops::Watcher::open(&self.shared.metrics.watchers);
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                let current = view_for(host, &catalogs.borrow_and_update());
                let version_hash = current.version_hash.clone();
                tokio::select! {
                    sent = tx.send(Ok(current)) => if sent.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                }
                // Keepalives until the catalog changes: a host that hears
                // nothing for a while knows the stream is dead.
                loop {
                    let idle = tokio::select! {
                        changed = catalogs.changed() => if changed.is_err() { return } else { false },
                        _ = stopping.wait_for(|s| *s) => return,
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(every) => true,
                    };
                    if !idle {
                        break;
                    }
                    let keepalive =
                        CatalogResponse { keepalive: true, version_hash: version_hash.clone(), ..Default::default() };
                    if tx.send(Ok(keepalive)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
