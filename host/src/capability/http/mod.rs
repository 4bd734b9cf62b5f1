//! The `http` capability: `RequestGet` and `RequestPost`, performed by the
//! host on the guest's behalf.
//!
//! Every hop (the first request and each redirect) is checked before it is
//! sent: `http`/`https` only, and the destination must be allow-listed
//! (`host:port`) or resolve to public addresses only
//! ([`avap_policy::net`]). There are two clients: allow-listed destinations
//! go through one that keeps every address, all others through one whose
//! [`GuardedResolver`] drops every non-public address, so the address
//! connected to is the address that was checked (no DNS rebinding between
//! check and connect). Redirects are followed by hand, at most
//! `max_redirects` of them. The client reads no proxy settings from the
//! environment: a proxy would connect on the guest's behalf unchecked.
//!
//! Names are resolved asynchronously (hickory), each lookup within the
//! request's own timeout: a name that resolves slowly costs only the
//! execution that asked for it. Lookups of one execution are bounded by its
//! request and redirect caps and run one at a time (a script makes one
//! request at a time).
//!
//! Open connections are capped for the whole process: requests in flight
//! at most `max_connections` (a request waits for a free one within its
//! timeout), connections to public destinations are not kept after their
//! request, and allow-listed destinations (a fixed, configured set) keep at
//! most [`IDLE_PER_ALLOWED_HOST`] idle connections each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use url::Url;

use avap_abi::wire::{HttpBody, HttpMethod, HttpRequest, HttpResponse};
use avap_policy::net::{self, AllowEntry, Route};

use super::CapError;

/// Settings of the `http` capability.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Destinations opened whatever their address (`AVAP_HTTP_ALLOW`).
    pub allow: Vec<AllowEntry>,
    /// Cap on one request, redirects included; never beyond the execution's deadline.
    pub timeout: Duration,
    /// Cap on a response body, in bytes.
    pub max_response_bytes: usize,
    /// Requests one execution may make.
    pub max_requests: u32,
    /// Redirects followed per request.
    pub max_redirects: u32,
    /// Requests in flight at once, for the whole process.
    pub max_connections: u32,
    /// Name servers to ask (`ip:port`); empty: the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
}

impl Default for HttpConfig {
    /// The built-in defaults ([`crate::Config::defaults`]).
    fn default() -> Self {
        crate::Config::defaults().http()
    }
}

/// Idle connections kept per allow-listed destination.
pub const IDLE_PER_ALLOWED_HOST: usize = 4;
/// How long one name lookup may take at most (twice: two attempts), within
/// the request's own timeout.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers the client manages itself; a script may not set them.
const MANAGED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te"];
/// Headers dropped when a redirect leaves the original origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// What one execution holds of the `http` capability.
#[derive(Debug, Default)]
pub struct HttpState {
    /// Requests made so far (capped at `max_requests`).
    requests: u32,
}

pub struct HttpCapability {
    /// Resolves names to public addresses only; keeps no idle connection.
    strict: reqwest::Client,
    /// For allow-listed `host:port` destinations only: keeps every address.
    open: reqwest::Client,
    /// Requests in flight, for the whole process.
    in_flight: Arc<Semaphore>,
    config: HttpConfig,
}

impl HttpCapability {
    pub fn new(config: HttpConfig) -> anyhow::Result<Self> {
        // Lookups happen inside a request's in-flight slot, so at most
        // `max_connections` run at once; the resolver's own cap sits above
        // that (A and AAAA, to two servers each), never a shared queue.
        let max_queries = 4 * config.max_connections as usize + 16;
        let resolver = Arc::new(build_resolver(&config.dns_servers, max_queries)?);
        let client = |open: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { open, resolver: resolver.clone() }))
                .user_agent(concat!("avap-host/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(if open { IDLE_PER_ALLOWED_HOST } else { 0 })
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
        };
        let in_flight = Arc::new(Semaphore::new(config.max_connections.max(1) as usize));
        Ok(HttpCapability { strict: client(false)?, open: client(true)?, in_flight, config })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// One `http_request` of an execution: counts it against the
    /// execution's cap, then performs it.
    pub async fn call(&self, state: &mut HttpState, request: &[u8], deadline: Instant) -> Result<Vec<u8>, CapError> {
        let max = self.config.max_requests;
        if state.requests >= max {
            return Err(CapError::Limit(format!("limit exceeded: at most {max} HTTP requests per execution")));
        }
        state.requests += 1;
        self.perform(request, deadline).await
    }

    /// Performs one request for a guest, within `deadline`, and returns the
    /// reply payload as JSON text.
    pub async fn perform(&self, request: &[u8], deadline: Instant) -> Result<Vec<u8>, CapError> {
        let req: HttpRequest<'_> = serde_json::from_slice(request)
            .map_err(|e| CapError::Failed(format!("malformed request from the guest: {e}")))?;
        let method = match req.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
        };
        let mut url =
            Url::parse(req.url.trim()).map_err(|e| CapError::Failed(format!("invalid url '{}': {e}", req.url)))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CapError::Failed(format!("invalid header name '{name}'")))?;
            if MANAGED_HEADERS.contains(&header.as_str()) {
                return Err(CapError::Refused(format!("header '{name}' is set by the host, not the script")));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| CapError::Failed(format!("invalid value for header '{name}'")))?;
            headers.append(header, value);
        }
        let body = match req.body {
            None => None,
            Some(HttpBody::Json(text)) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(text)
            }
            Some(HttpBody::Text(text)) => Some(text),
        };

        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CapError::Timeout("the execution's deadline has passed".into()));
        }
        let (limit, what) = if remaining < self.config.timeout {
            (remaining, "the execution's deadline")
        } else {
            (self.config.timeout, "the request timeout")
        };
        let shown = url.to_string();
        let work = async {
            let _slot = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| CapError::Failed("the HTTP client is shutting down".to_string()))?;
            self.follow(method, url, headers, body).await
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => {
                Err(CapError::Timeout(format!("request to {shown} timed out after {} ms ({what})", limit.as_millis())))
            }
        }
    }

    /// Sends the request and follows redirects, checking every hop.
    async fn follow(
        &self,
        mut method: Method,
        mut url: Url,
        mut headers: HeaderMap,
        mut body: Option<String>,
    ) -> Result<Vec<u8>, CapError> {
        let mut redirects = 0;
        loop {
            let client = match net::check_destination(&url, &self.config.allow).map_err(CapError::Refused)? {
                Route::AllowListed => &self.open,
                Route::Public => &self.strict,
            };
            let mut builder = client.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let response = builder.send().await.map_err(|e| transport_error(&url, &e))?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(LOCATION)
            {
                if redirects >= self.config.max_redirects {
                    return Err(CapError::Limit(format!(
                        "too many redirects (more than {})",
                        self.config.max_redirects
                    )));
                }
                redirects += 1;
                let location = location
                    .to_str()
                    .map_err(|_| CapError::Failed(format!("unreadable redirect location from {url}")))?;
                let next = url
                    .join(location)
                    .map_err(|e| CapError::Failed(format!("invalid redirect location '{location}': {e}")))?;
                if next.origin() != url.origin() {
                    for h in CREDENTIAL_HEADERS {
                        headers.remove(*h);
                    }
                }
                // 303, and 301/302 after a POST, become a GET without a body
                // (as browsers and Python's requests do); 307/308 keep both.
                if status == StatusCode::SEE_OTHER
                    || (method == Method::POST && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
                {
                    method = Method::GET;
                    body = None;
                    headers.remove(CONTENT_TYPE);
                }
                url = next;
                continue;
            }
            let body = self.read_body(response, &url).await?;
            let reply = HttpResponse {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or_default().to_string(),
                body: String::from_utf8_lossy(&body).into_owned(),
                url: url.to_string(),
            };
            return serde_json::to_vec(&reply).map_err(|e| CapError::Failed(format!("encoding the reply: {e}")));
        }
    }

    /// Reads a body of at most `max_response_bytes`.
    async fn read_body(&self, mut response: reqwest::Response, url: &Url) -> Result<Vec<u8>, CapError> {
        let cap = self.config.max_response_bytes;
        let too_big = || CapError::Limit(format!("the response from {url} is larger than the cap of {cap} bytes"));
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(url, &e))? {
            if body.len() + chunk.len() > cap {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The resolver's refusal, carried through the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// A transport failure as the script sees it, with its causes (or just the
/// refusal, when the resolver refused the destination).
fn transport_error(url: &Url, err: &reqwest::Error) -> CapError {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return CapError::Refused(refused.0.clone());
        }
        source = cause.source();
    }
    let mut msg = if err.is_timeout() {
        format!("request to {url} timed out")
    } else if err.is_connect() {
        format!("could not connect to {url}")
    } else {
        format!("request to {url} failed")
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_timeout() { CapError::Timeout(msg) } else { CapError::Failed(msg) }
}

/// The resolver: the given name servers, or the system's.
fn build_resolver(servers: &[SocketAddr], max_queries: usize) -> anyhow::Result<TokioResolver> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| anyhow::anyhow!("reading the system's resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = 2;
    options.max_active_requests = max_queries;
    Ok(builder.build()?)
}

async fn lookup(resolver: &TokioResolver, host: &str) -> Result<Vec<SocketAddr>, String> {
    // Literal addresses never reach the resolver (the URL check judged them).
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, 0)]);
    }
    let answer = resolver.lookup_ip(host).await.map_err(|e| format!("could not resolve {host}: {e}"))?;
    let addrs: Vec<SocketAddr> = answer.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
    if addrs.is_empty() {
        return Err(format!("could not resolve {host}: no addresses"));
    }
    Ok(addrs)
}

/// Resolves names for a client: the strict one keeps public addresses
/// only, the open one (used only for allow-listed destinations) keeps all.
struct GuardedResolver {
    open: bool,
    resolver: Arc<TokioResolver>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let (open, resolver) = (self.open, self.resolver.clone());
        Box::pin(async move {
            // Never empty: `lookup` fails rather than return no address.
            let addrs = lookup(&resolver, &host).await?;
            let kept: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| open || net::refusal(a.ip()).is_none()).collect();
            if !kept.is_empty() {
                return Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs);
            }
            // Every address was refused. Say which kind, not which address:
            // the script is not told what internal names resolve to.
            let why =
                addrs.iter().find_map(|a| net::refusal(a.ip())).ok_or_else(|| format!("could not resolve {host}"))?;
            Err(Box::new(Refused(format!("destination refused: {host} resolves to {why}"))) as _)
        })
    }
}
