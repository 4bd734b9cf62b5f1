//! The `http` capability: `RequestGet` and `RequestPost`, performed by the
//! host on the guest's behalf.
//!
//! Every hop (the first request and each redirect) is checked before it is
//! sent: `http`/`https` only, and the destination must be allow-listed
//! (`host:port`) or resolve to public addresses only ([`super::net`]). There
//! are two clients: allow-listed destinations go through one that keeps
//! every address, all others through one whose [`GuardedResolver`] drops
//! every non-public address, so the address connected to is the address
//! that was checked (no DNS rebinding between check and connect). Redirects are followed by hand, at
//! most `max_redirects` of them. The client reads no proxy settings from the
//! environment: a proxy would connect on the guest's behalf unchecked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use url::{Host, Url};

use super::net::{self, AllowEntry};

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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            max_requests: 10,
            max_redirects: 5,
        }
    }
}

/// What the guest sends (see `guest-vm/src/host.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRequest {
    method: String,
    url: String,
    #[serde(default)]
    query: Vec<(String, String)>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<Body>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Body {
    Json(String),
    Text(String),
}

/// Headers the client manages itself; a script may not set them.
const MANAGED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te"];
/// Headers dropped when a redirect leaves the original origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

pub struct HttpCapability {
    /// Resolves names to public addresses only.
    strict: reqwest::Client,
    /// For allow-listed `host:port` destinations only: keeps every address.
    open: reqwest::Client,
    config: HttpConfig,
}

impl HttpCapability {
    pub fn new(config: HttpConfig) -> anyhow::Result<Self> {
        let lookups = Arc::new(Semaphore::new(MAX_LOOKUPS));
        let client = |open: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { open, lookups: lookups.clone() }))
                .user_agent(concat!("avap-host/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(4)
                .build()
        };
        Ok(HttpCapability { strict: client(false)?, open: client(true)?, config })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Performs one request for a guest, within `deadline`. `Err` is the
    /// message of a catchable runtime error.
    pub async fn perform(&self, request: &[u8], deadline: Instant) -> Result<Value, String> {
        let req: HttpRequest =
            serde_json::from_slice(request).map_err(|e| format!("malformed request from the guest: {e}"))?;
        let method = match req.method.as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            other => return Err(format!("method '{other}' is not allowed")),
        };
        let mut url = Url::parse(req.url.trim()).map_err(|e| format!("invalid url '{}': {e}", req.url))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            let header =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name '{name}'"))?;
            if MANAGED_HEADERS.contains(&header.as_str()) {
                return Err(format!("header '{name}' is set by the host, not the script"));
            }
            let value = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header '{name}'"))?;
            headers.append(header, value);
        }
        let body = match req.body {
            None => None,
            Some(Body::Json(text)) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(text)
            }
            Some(Body::Text(text)) => Some(text),
        };

        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err("the execution's deadline has passed".into());
        }
        let (limit, what) = if remaining < self.config.timeout {
            (remaining, "the execution's deadline")
        } else {
            (self.config.timeout, "the request timeout")
        };
        let shown = url.to_string();
        match tokio::time::timeout(limit, self.follow(method, url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(format!("request to {shown} timed out after {} ms ({what})", limit.as_millis())),
        }
    }

    /// Sends the request and follows redirects, checking every hop.
    async fn follow(
        &self,
        mut method: Method,
        mut url: Url,
        mut headers: HeaderMap,
        mut body: Option<String>,
    ) -> Result<Value, String> {
        let mut redirects = 0;
        loop {
            let client = if self.check_destination(&url)? { &self.open } else { &self.strict };
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
                    return Err(format!("too many redirects (more than {})", self.config.max_redirects));
                }
                redirects += 1;
                let location = location.to_str().map_err(|_| format!("unreadable redirect location from {url}"))?;
                let next = url.join(location).map_err(|e| format!("invalid redirect location '{location}': {e}"))?;
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
            return Ok(json!({
                "status": status.as_u16(),
                "reason": status.canonical_reason().unwrap_or_default(),
                "body": String::from_utf8_lossy(&body),
                "url": url.as_str(),
            }));
        }
    }

    /// Reads a body of at most `max_response_bytes`.
    async fn read_body(&self, mut response: reqwest::Response, url: &Url) -> Result<Vec<u8>, String> {
        let cap = self.config.max_response_bytes;
        let too_big = || format!("the response from {url} is larger than the cap of {cap} bytes");
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

    /// Scheme and destination rules for one hop. `Ok(true)`: the exact
    /// `host:port` is allow-listed (use the open client); `Ok(false)`: use
    /// the strict client, whose resolver refuses non-public addresses.
    fn check_destination(&self, url: &Url) -> Result<bool, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("destination refused: only http and https URLs are allowed, not '{}'", url.scheme()));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let (host, ip) = match url.host() {
            Some(Host::Domain(d)) => (d.to_ascii_lowercase(), None),
            Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(format!("destination refused: '{url}' has no host")),
        };
        if self.allowed(&host, port) {
            return Ok(true);
        }
        match ip.map(|ip| (ip, net::refusal(ip))) {
            Some((ip, Some(why))) => Err(format!("destination refused: {ip} is {why}")),
            _ => Ok(false),
        }
    }

    fn allowed(&self, host: &str, port: u16) -> bool {
        self.config.allow.iter().any(|e| e.host == host && e.port == port)
    }
}

/// The resolver's refusal, carried through the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// A transport failure as the script sees it, with its causes (or just the
/// refusal, when the resolver refused the destination).
fn transport_error(url: &Url, err: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return refused.0.clone();
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
    msg
}

/// Name lookups in flight at once, for the whole process. Each runs on a
/// blocking thread that a timeout cannot stop, so they are counted until
/// the thread is done, and a lookup beyond the bound fails at once.
const MAX_LOOKUPS: usize = 16;

async fn lookup(lookups: &Arc<Semaphore>, host: &str) -> Result<Vec<SocketAddr>, String> {
    let permit = lookups
        .clone()
        .try_acquire_owned()
        .map_err(|_| format!("could not resolve {host}: too many name lookups in progress"))?;
    let name = host.to_string();
    let addrs = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0)).map(Iterator::collect::<Vec<_>>)
    })
    .await
    .map_err(|e| format!("could not resolve {host}: {e}"))?
    .map_err(|e| format!("could not resolve {host}: {e}"))?;
    if addrs.is_empty() {
        return Err(format!("could not resolve {host}: no addresses"));
    }
    Ok(addrs)
}

/// Resolves names for a client: the strict one keeps public addresses
/// only, the open one (used only for allow-listed destinations) keeps all.
struct GuardedResolver {
    open: bool,
    lookups: Arc<Semaphore>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let (open, lookups) = (self.open, self.lookups.clone());
        Box::pin(async move {
            // Never empty: `lookup` fails rather than return no address.
            let addrs = lookup(&lookups, &host).await?;
            let kept: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| open || net::refusal(a.ip()).is_none()).collect();
            if !kept.is_empty() {
                return Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs);
            }
            // Every address was refused; name the first.
            let (ip, why) = addrs
                .iter()
                .find_map(|a| net::refusal(a.ip()).map(|why| (a.ip(), why)))
                .ok_or_else(|| format!("could not resolve {host}"))?;
            Err(Box::new(Refused(format!("destination refused: {host} resolves to {ip}, {why}"))) as _)
        })
    }
}
