//! Keeps the host's catalog in step with the definition server.
//!
//! At start-up one `SyncCatalog` is tried within a short deadline; the host
//! serves either way (with its built-in catalog and guest if the server is
//! not there). Then a background task follows the server for the life of the
//! process: the `WatchCatalog` stream when the server offers it (updates are
//! pushed), `SyncCatalog` every `sync_poll_secs` when it answers
//! `UNIMPLEMENTED` (the original servers), and exponential backoff between
//! connection attempts while it is unreachable.
//!
//! The link is TLS when `BRAIN_TLS_CA` is set (the server's certificate
//! must chain to it and name `BRAIN_TLS_DOMAIN`, or `BRAIN_HOST`), with a
//! client certificate for mutual TLS when `BRAIN_TLS_CLIENT_CERT`/
//! `BRAIN_TLS_CLIENT_KEY` are. HTTP/2 keepalive pings find a dead connection; a watch stream on
//! which nothing arrives (the brain sends a keepalive message while its
//! catalog is unchanged) within `AVAP_BRAIN_IDLE_TIMEOUT_MS` is stale:
//! `/health` says so and the host reconnects.
//!
//! Keepalives are not signed, so they cannot vouch for the catalog: a link
//! counts as `live` only while the live catalog's manifest has not expired.
//! The brain seals its catalog again well before that; a link on which
//! only keepalives (or the same old catalog) arrive past the expiry is
//! shown as `stale`, with why, and `avap_brain_up` is 0.

use std::sync::Arc;
use std::time::Duration;

use avap_wire::pb::definition_engine_client::DefinitionEngineClient;
use avap_wire::pb::{CatalogResponse, Empty};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::catalog::rollout::Applied;
use crate::config::Config;
use crate::metrics::SyncResult;
use crate::state::{AppState, SyncMode};

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

type Client = DefinitionEngineClient<InterceptedService<Channel, Auth>>;

/// Adds `x-avap-auth` to every call, and `x-avap-client: avap-host`, which
/// asks the brain for the whole catalog (the guest module and the manifest
/// included), not the original servers' view of it.
#[derive(Clone)]
struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert(avap_wire::auth::AUTH_METADATA, self.0.clone());
        metadata.insert(avap_wire::auth::CLIENT_METADATA, MetadataValue::from_static(avap_wire::auth::HOST_CLIENT));
        Ok(request)
    }
}

#[derive(Clone)]
pub struct SyncConfig {
    pub url: String,
    pub api_key: String,
    pub poll: Duration,
    pub startup_timeout: Duration,
    /// `None`: plaintext.
    pub tls: Option<ClientTlsConfig>,
    /// A watch stream silent this long is stale.
    pub idle_timeout: Duration,
    /// Largest message decoded (a whole catalog).
    pub max_message_bytes: usize,
}

fn read_file(path: &std::path::Path, what: &'static str) -> Result<Vec<u8>, crate::catalog::trust::TrustError> {
    std::fs::read(path).map_err(|source| crate::catalog::trust::TrustError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl SyncConfig {
    /// Reads the TLS files the configuration names.
    pub fn from_config(config: &Config) -> Result<Self, crate::catalog::trust::TrustError> {
        let tls = match &config.brain_tls_ca {
            None => None,
            Some(ca) => {
                let domain = config.brain_tls_domain.clone().unwrap_or_else(|| config.brain_host().to_string());
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read_file(ca, "BRAIN_TLS_CA")?))
                    .domain_name(domain);
                if let (Some(cert), Some(key)) = (&config.brain_client_cert, &config.brain_client_key) {
                    tls = tls.identity(Identity::from_pem(
                        read_file(cert, "BRAIN_TLS_CLIENT_CERT")?,
                        read_file(key, "BRAIN_TLS_CLIENT_KEY")?,
                    ));
                }
                Some(tls)
            }
        };
        Ok(SyncConfig {
            url: config.brain_url(),
            api_key: config.api_key.clone(),
            poll: Duration::from_secs(config.sync_poll_secs),
            startup_timeout: Duration::from_millis(config.sync_startup_timeout_ms),
            tls,
            idle_timeout: Duration::from_millis(config.brain_idle_timeout_ms),
            max_message_bytes: config.brain_max_message_bytes,
        })
    }
}

/// Tries one sync within the start-up deadline, then follows the server in
/// the background. Returns once the first attempt is over: the catalog
/// applied, or the deadline passed. Applying (a new guest's compile,
/// self-test and snapshot) is never cut short by the deadline: it goes on
/// in the background and the host serves its built-in catalog meanwhile.
pub async fn start(state: Arc<AppState>, config: SyncConfig) -> tokio::task::JoinHandle<()> {
    let deadline = tokio::time::Instant::now() + config.startup_timeout;
    let first = async {
        let mut client = connect(&config).await?;
        let response = client.sync_catalog(Empty {}).await?.into_inner();
        Ok::<_, SyncError>(response)
    };
    match tokio::time::timeout_at(deadline, first).await {
        Ok(Ok(response)) => {
            heard(&state);
            let applying = {
                let state = state.clone();
                tokio::spawn(async move { apply(&state, response).await })
            };
            if tokio::time::timeout_at(deadline, applying).await.is_err() {
                tracing::info!("the first catalog is still being applied; serving the built-in catalog meanwhile");
            }
        }
        Ok(Err(e)) => unreachable_now(&state, &e),
        Err(_) => unreachable_now(&state, &SyncError::StartupDeadline),
    }
    tokio::spawn(follow(state, config))
}

/// Follows the definition server until the process ends.
pub async fn follow(state: Arc<AppState>, config: SyncConfig) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Err(e) = session(&state, &config, &mut backoff).await {
            unreachable_now(&state, &e);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: watch if offered, poll otherwise, until it fails.
async fn session(state: &Arc<AppState>, config: &SyncConfig, backoff: &mut Duration) -> Result<(), SyncError> {
    // The TLS and HTTP/2 handshakes and the stream's response headers have
    // a deadline too: a peer that accepts and then stalls is not live.
    let opened = tokio::time::timeout(CALL_TIMEOUT, async {
        let mut client = connect(config).await?;
        let watch = client.watch_catalog(Empty {}).await;
        Ok::<_, SyncError>((client, watch))
    });
    let (mut client, watch) = opened.await.map_err(|_| SyncError::Timeout)??;
    match watch {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            state.update_sync(|s| s.mode = SyncMode::Watch);
            heard(state);
            *backoff = BACKOFF_MIN;
            loop {
                let next = tokio::time::timeout(config.idle_timeout, stream.message()).await;
                let Ok(message) = next else { return Err(SyncError::Silent(config.idle_timeout)) };
                let Some(response) = message? else { return Err(SyncError::Closed) };
                heard(state);
                if response.keepalive {
                    continue;
                }
                apply(state, response).await;
                // A newer manifest may have ended an expiry.
                heard(state);
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            state.update_sync(|s| s.mode = SyncMode::Poll);
            loop {
                let response = tokio::time::timeout(CALL_TIMEOUT, client.sync_catalog(Empty {}))
                    .await
                    .map_err(|_| SyncError::Timeout)??
                    .into_inner();
                heard(state);
                *backoff = BACKOFF_MIN;
                apply(state, response).await;
                heard(state);
                tokio::time::sleep(config.poll).await;
            }
        }
        Err(status) => Err(status.into()),
    }
}

/// A message (catalog or keepalive) arrived: the link is live, unless the
/// live catalog's manifest has expired (then it is `stale`: messages that
/// bring nothing newer do not keep a host up to date).
fn heard(state: &AppState) {
    let now = std::time::SystemTime::now();
    let expired = state.catalog().expires_at.filter(|at| *at < now).map(|at| {
        format!(
            "the live catalog's manifest expired at {} and the definition server has sent none newer (keepalives do \
             not renew it): it stopped sealing its catalog, or something between it and this host holds its \
             catalogs back",
            crate::state::rfc3339(at)
        )
    });
    state.metrics.brain_up(expired.is_none());
    let mut recovered = false;
    let mut newly_expired = false;
    state.update_sync(|s| {
        recovered = s.last_error.is_some() && expired.is_none();
        newly_expired = expired.is_some() && s.last_error != expired;
        s.reachable = true;
        s.state = if expired.is_some() { "stale" } else { "live" };
        s.last_error = expired.clone();
        s.last_message_at = Some(now);
    });
    if newly_expired {
        tracing::warn!(reason = expired.as_deref().unwrap_or_default(), "definition server link is stale");
    } else if recovered {
        tracing::info!("definition server reachable again");
    }
}

async fn connect(config: &SyncConfig) -> Result<Client, SyncError> {
    let mut endpoint = Endpoint::from_shared(config.url.clone())
        .map_err(|e| SyncError::Config(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    let key = MetadataValue::try_from(config.api_key.as_str())
        .map_err(|_| SyncError::Config("API_KEY is not valid gRPC metadata".into()))?;
    let channel = endpoint.connect().await?;
    Ok(DefinitionEngineClient::with_interceptor(channel, Auth(key)).max_decoding_message_size(config.max_message_bytes))
}

async fn apply(state: &Arc<AppState>, response: CatalogResponse) {
    match state.apply_catalog(response).await {
        Ok(Applied::Unchanged) => state.metrics.catalog_sync(SyncResult::Unchanged),
        Ok(Applied::Updated { .. }) => state.metrics.catalog_sync(SyncResult::Applied),
        Err(e) => state.record_refusal(&e),
    }
}

/// The link failed: `stale` when a watch stream went silent, else
/// `unreachable` (until a message arrives again).
///
/// Logged once per reason, not at every retry: the same failure again is
/// a debug line (`/health` and `avap_brain_up` show it all along).
fn unreachable_now(state: &AppState, err: &SyncError) {
    let reason = err.to_string();
    state.metrics.brain_up(false);
    let silent = matches!(err, SyncError::Silent(_));
    let mut repeated = false;
    state.update_sync(|s| {
        repeated = s.last_error.as_deref() == Some(reason.as_str());
        s.reachable = false;
        s.state = if silent { "stale" } else { "unreachable" };
        s.last_error = Some(reason.clone());
    });
    if repeated {
        tracing::debug!(reason, "definition server still unreachable");
    } else {
        tracing::warn!(
            reason,
            address = %state.sync_address(),
            "definition server unreachable; serving the last good catalog and retrying in the background \
             (--standalone to run without one)"
        );
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("cannot connect: {}", avap_wire::error_chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("{}", describe(.0))]
    Rpc(#[from] Status),
    #[error("no answer within {CALL_TIMEOUT:?}")]
    Timeout,
    #[error("no answer within the start-up deadline (AVAP_SYNC_STARTUP_TIMEOUT_MS)")]
    StartupDeadline,
    #[error("the watch stream ended")]
    Closed,
    #[error("the watch stream was silent for {0:?} (no catalog, no keepalive): reconnecting")]
    Silent(Duration),
    #[error("bad configuration: {0}")]
    Config(String),
}

fn describe(status: &Status) -> String {
    match status.code() {
        Code::Unauthenticated => "the definition server refused API_KEY (UNAUTHENTICATED)".into(),
        code => format!("{code:?}: {}", status.message()),
    }
}
