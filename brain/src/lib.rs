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
//! Starting one in-process (tests):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let brain = avap_brain::Brain::new(avap_brain::BrainConfig::default())?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(brain.clone().serve(listener, async move { let _ = stopped.await; }));
//! // ... connect a client to `url`, read brain.catalog() / brain.last_error() ...
//! let _ = stop.send(());
//! server.await??;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod catalog;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use avap_wire::auth::{AUTH_METADATA, DEFAULT_API_KEY, DEFAULT_INTERNAL_KEY, key_matches};
use avap_wire::pb::{
    CatalogResponse, CommandRequest, CommandResponse, DefinitionEngine, DefinitionEngineServer, Empty,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

pub use catalog::CatalogError;
use catalog::Fingerprint;

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
}

impl Default for BrainConfig {
    fn default() -> Self {
        BrainConfig {
            catalog_dir: None,
            api_key: DEFAULT_API_KEY.to_string(),
            internal_key: DEFAULT_INTERNAL_KEY.to_string(),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for BrainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrainConfig")
            .field("catalog_dir", &self.catalog_dir)
            .field("api_key", &"<redacted>")
            .field("internal_key", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
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
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

struct Shared {
    config: BrainConfig,
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

impl Brain {
    /// Builds the first catalog. If the folder's catalog does not build, the
    /// server starts with the built-in default and reports the error (the
    /// folder is still watched, so fixing it publishes the full catalog).
    pub fn new(mut config: BrainConfig) -> Result<Brain, BrainError> {
        config.poll_interval = config.poll_interval.max(Duration::from_millis(1));
        if config.internal_key == DEFAULT_INTERNAL_KEY {
            tracing::warn!(
                "!!! AVAP_INTERNAL_KEY is the public default key: anyone can sign packages this catalog's \
                 peers will trust. Set AVAP_INTERNAL_KEY for any real deployment. !!!"
            );
        }
        if config.api_key == DEFAULT_API_KEY {
            tracing::warn!("API_KEY is the public default: any client can read the catalog. Set API_KEY.");
        }
        let key = config.internal_key.as_bytes();
        let mut state = ScanState::default();
        let first = match config.catalog_dir.as_deref() {
            None => catalog::build(key, None).map_err(BrainError::BuiltIn)?,
            Some(dir) => {
                state.fingerprint = Fingerprint::of(dir);
                match catalog::build(key, Some(dir)) {
                    Ok(c) => c,
                    Err(errors) => {
                        let text = describe(&errors);
                        tracing::error!(folder = %dir.display(), "catalog folder rejected, serving the built-in catalog:\n{text}");
                        state.last_error = Some(errors.into());
                        state.last_logged = Some(text);
                        catalog::build(key, None).map_err(BrainError::BuiltIn)?
                    }
                }
            }
        };
        tracing::info!(version_hash = %first.version_hash, total_count = first.total_count, "catalog ready");
        let (catalog, _) = watch::channel(Arc::new(first));
        let (stopping, _) = watch::channel(false);
        Ok(Brain { shared: Arc::new(Shared { config, catalog, stopping, state: Mutex::new(state) }) })
    }

    /// The catalog being served now.
    pub fn catalog(&self) -> Arc<CatalogResponse> {
        self.shared.catalog.borrow().clone()
    }

    /// A receiver that sees every newly published catalog.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CatalogResponse>> {
        self.shared.catalog.subscribe()
    }

    /// Why the catalog folder's current contents were rejected; `None` when
    /// the served catalog reflects the folder.
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
        if unchanged && !fingerprint.as_ref().is_some_and(Fingerprint::unsettled) {
            return false;
        }
        state.fingerprint = fingerprint;
        match catalog::build(self.shared.config.internal_key.as_bytes(), Some(dir)) {
            Err(errors) => {
                let text = describe(&errors);
                if state.last_logged.as_deref() != Some(text.as_str()) {
                    tracing::error!(folder = %dir.display(), "catalog folder rejected, keeping the previous catalog:\n{text}");
                    state.last_logged = Some(text);
                }
                state.last_error = Some(errors.into());
                false
            }
            Ok(next) => {
                if state.last_error.take().is_some() {
                    tracing::info!(folder = %dir.display(), "catalog folder is valid again");
                }
                state.last_logged = None;
                let (version_hash, total_count) = (next.version_hash.clone(), next.total_count);
                let published = self.shared.catalog.send_if_modified(|current| {
                    if current.version_hash == next.version_hash {
                        return false;
                    }
                    *current = Arc::new(next);
                    true
                });
                if published {
                    tracing::info!(%version_hash, total_count, "new catalog published");
                }
                published
            }
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
        let engine = DefinitionEngineServer::new(self.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
        let engine = InterceptedService::new(engine, auth_interceptor(&self.shared.config.api_key));
        let stopping = self.shared.stopping.clone();
        let signal = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(health)
            .add_service(engine)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
            .await;
        self.shared.stopping.send_replace(true);
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

#[tonic::async_trait]
impl DefinitionEngine for Brain {
    async fn get_command(&self, request: Request<CommandRequest>) -> Result<Response<CommandResponse>, Status> {
        let name = request.into_inner().name;
        let catalog = self.catalog();
        match catalog.commands.iter().find(|c| c.name == name) {
            Some(entry) => Ok(Response::new(entry.clone())),
            None => {
                let shown: String = name.chars().take(100).collect();
                Err(Status::not_found(format!("unknown command '{shown}'")))
            }
        }
    }

    async fn sync_catalog(&self, _: Request<Empty>) -> Result<Response<CatalogResponse>, Status> {
        Ok(Response::new(CatalogResponse::clone(&self.catalog())))
    }

    type WatchCatalogStream = ReceiverStream<Result<CatalogResponse, Status>>;

    /// The current catalog at once, then every newly published one. A slow
    /// reader skips intermediate catalogs and gets the newest.
    async fn watch_catalog(&self, _: Request<Empty>) -> Result<Response<Self::WatchCatalogStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let mut catalogs = self.subscribe();
        let mut stopping = self.shared.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                let current = CatalogResponse::clone(&catalogs.borrow_and_update());
                tokio::select! {
                    sent = tx.send(Ok(current)) => if sent.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                }
                tokio::select! {
                    changed = catalogs.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
