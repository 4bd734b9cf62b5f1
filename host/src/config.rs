//! Command-line flags and environment variables of `avap-host`: data only.
//! Every limit has a default that is safe to run with, written once, in the
//! `#[arg]` attributes below; [`Config::defaults`] reads them (and no
//! environment), the `Default` impls of the parts ([`Limits`],
//! [`HttpConfig`], [`DbConfig`], [`FrontConfig`]) are made from it, and a
//! test checks README.md's table against them. Lists are parsed when the
//! flags are ([`List`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use avap_abi::Capability;
use avap_policy::net::AllowEntry;
use avap_wire::guest_sig::GuestPublicKey;

use crate::capability::db::DbConfig;
use crate::capability::http::HttpConfig;
use crate::front::FrontConfig;
use crate::runtime::Limits;

/// A comma-separated list, parsed with the flags: entries trimmed, empty
/// ones dropped (so an empty value is an empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T: FromStr> FromStr for List<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<T>().map_err(|e| format!("'{s}': {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(List)
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(items: Vec<T>) -> Self {
        List(items)
    }
}

/// A browser origin (`scheme://host[:port]`) for `AVAP_CORS_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub String);

impl FromStr for Origin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "*" || text == "null" || text.ends_with('/') {
            return Err("not an origin (write scheme://host[:port], e.g. https://app.example.com)".into());
        }
        Ok(Origin(text.to_string()))
    }
}

#[derive(Debug, Clone, Parser)]
#[command(name = "avap-host", version, about = "AVAP execution host: runs AVAP scripts in a wasmtime sandbox")]
pub struct Config {
    /// Log format: `text` (no colour unless a terminal) or `json` (one
    /// object per line, with the request id).
    #[arg(long, env = "AVAP_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,

    /// TCP port of the HTTP API.
    #[arg(long, env = "PORT", default_value_t = 8888)]
    pub port: u16,

    /// Address to listen on (all interfaces by default, for containers; use
    /// 127.0.0.1 on a workstation).
    #[arg(long, env = "AVAP_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,

    /// Bearer tokens that `execute`, `compile`, `/metrics` and the details
    /// of `/health` require, comma-separated (empty: no token needed).
    #[arg(long, env = "AVAP_API_TOKENS", default_value = "", hide_env_values = true, hide_default_value = true)]
    pub api_tokens: List<String>,

    /// Origins whose browser requests are allowed, comma-separated
    /// (`https://app.example.com`); every other cross-site request gets 403.
    #[arg(long, env = "AVAP_CORS_ORIGINS", default_value = "")]
    pub cors_origins: List<Origin>,

    /// Time a client has to send a request's headers (also how long an idle
    /// keep-alive connection stays open), in milliseconds.
    #[arg(long, env = "AVAP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub header_timeout_ms: u64,

    /// Time a client has to send a request's body, in milliseconds.
    #[arg(long, env = "AVAP_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub body_timeout_ms: u64,

    /// Open client connections at most; beyond it new ones wait in the
    /// kernel's queue.
    #[arg(long, env = "AVAP_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Bytes of request bodies being received at once, all connections
    /// together; past it a request waits up to the body timeout, then 503.
    #[arg(long, env = "AVAP_MAX_INFLIGHT_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_inflight_body_bytes: usize,

    /// Cap on one execution's linear memory, in MiB.
    #[arg(long, env = "AVAP_MAX_MEMORY_MB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4095))]
    pub max_memory_mb: u32,

    /// Fuel per execution: a deterministic CPU budget (about one unit per
    /// wasm instruction; 2e9 is roughly half a second of interpreter work).
    #[arg(long, env = "AVAP_FUEL", default_value_t = 2_000_000_000)]
    pub fuel: u64,

    /// Wall-clock deadline per execution, in milliseconds.
    #[arg(long, env = "AVAP_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,

    /// Executions that may run at once; more wait in a short queue.
    #[arg(long, env = "AVAP_MAX_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,

    /// How long a request may wait for an execution slot before it gets 503.
    #[arg(long, env = "AVAP_QUEUE_TIMEOUT_MS", default_value_t = 200)]
    pub queue_timeout_ms: u64,

    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, env = "AVAP_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Largest output document read back from the guest, in bytes.
    #[arg(long, env = "AVAP_MAX_OUTPUT_BYTES", default_value_t = 8 << 20)]
    pub max_output_bytes: usize,

    /// Definition server host. Unset: `avap-definition-engine` (the name
    /// the deployments give it), except with --dev, where a host with no
    /// brain named follows none (standalone): a development host never
    /// dials a name that whoever answers on the local network could claim.
    #[arg(long, env = "BRAIN_HOST")]
    pub brain_host: Option<String>,

    /// Definition server gRPC port.
    #[arg(long, env = "BRAIN_PORT", default_value_t = 50051)]
    pub brain_port: u16,

    /// Token sent as `x-avap-auth` metadata to the definition server.
    #[arg(long, env = "API_KEY", default_value = avap_wire::auth::DEFAULT_API_KEY, hide_env_values = true)]
    pub api_key: String,

    /// Shared secret the package and catalog keys are derived from (the
    /// published default is refused without --dev or --original-servers).
    #[arg(long, env = "AVAP_INTERNAL_KEY", default_value = avap_wire::auth::DEFAULT_INTERNAL_KEY, hide_env_values = true)]
    pub internal_key: String,

    /// Development: allow the published default keys, trust the published
    /// development guest key, reach the definition server in plaintext.
    /// Never for a deployment; said at start-up and in `/health`.
    #[arg(long, env = "AVAP_DEV", default_value_t = false)]
    pub dev: bool,

    /// Talk to the original AVAP servers: catalog entries verified with the
    /// shared secret itself, catalogs without a signed manifest accepted,
    /// the default keys allowed. Logged loudly, shown in `/health`.
    #[arg(long, env = "AVAP_ORIGINAL_SERVERS", default_value_t = false)]
    pub original_servers: bool,

    /// Ed25519 public keys (64 hex digits each, comma-separated) one of
    /// which must have signed a guest module from the definition server.
    #[arg(long, env = "AVAP_GUEST_KEYS", default_value = "")]
    pub guest_keys: List<GuestPublicKey>,

    /// CA certificate (PEM) the definition server's certificate must chain
    /// to; setting it turns TLS on (a private CA pins the brain).
    #[arg(long, env = "BRAIN_TLS_CA")]
    pub brain_tls_ca: Option<PathBuf>,

    /// Name the definition server's certificate must carry (default: BRAIN_HOST).
    #[arg(long, env = "BRAIN_TLS_DOMAIN")]
    pub brain_tls_domain: Option<String>,

    /// Client certificate (PEM) this host presents to the definition server
    /// for mutual TLS (the brain's own certificate is BRAIN_TLS_CERT).
    #[arg(long, env = "BRAIN_TLS_CLIENT_CERT", requires = "brain_client_key")]
    pub brain_client_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "BRAIN_TLS_CLIENT_KEY", requires = "brain_client_cert")]
    pub brain_client_key: Option<PathBuf>,

    /// Reach the definition server in plaintext without --dev (logged as a warning).
    #[arg(long, env = "AVAP_BRAIN_PLAINTEXT", default_value_t = false)]
    pub brain_plaintext: bool,

    /// This host's id for staged guest roll-outs (default: the machine's name).
    #[arg(long, env = "AVAP_HOST_ID")]
    pub host_id: Option<String>,

    /// Largest message accepted from the definition server (a whole
    /// catalog), in bytes.
    #[arg(long, env = "AVAP_BRAIN_MAX_MESSAGE_BYTES", default_value_t = 32 << 20)]
    pub brain_max_message_bytes: usize,

    /// Entries a catalog may hold.
    #[arg(long, env = "AVAP_MAX_CATALOG_ENTRIES", default_value_t = 20_000)]
    pub max_catalog_entries: usize,

    /// Largest guest module taken from the definition server, in bytes
    /// (wasm binary only).
    #[arg(long, env = "AVAP_MAX_GUEST_MODULE_BYTES", default_value_t = 16 << 20)]
    pub max_guest_module_bytes: usize,

    /// A watch stream with no message (catalog or keepalive) for this long
    /// is stale: `/health` says so and the host reconnects. Milliseconds.
    #[arg(long, env = "AVAP_BRAIN_IDLE_TIMEOUT_MS", default_value_t = 45_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub brain_idle_timeout_ms: u64,

    /// Directory where compiled guests are kept between starts (so a
    /// restart does not compile again); each is authenticated under a key
    /// of this host's own. Empty: `$XDG_CACHE_HOME/avap-host` (or
    /// `~/.cache/avap-host`); `off`: none.
    #[arg(long, env = "AVAP_CACHE_DIR", default_value = "")]
    pub cache_dir: String,

    /// Serve the built-in catalog and guest only; never contact a definition server.
    #[arg(long, env = "AVAP_STANDALONE", default_value_t = false)]
    pub standalone: bool,

    /// Report ready (`/readyz`) before the first catalog sync succeeds.
    #[arg(long, env = "AVAP_READY_WITHOUT_BRAIN", default_value_t = false)]
    pub ready_without_brain: bool,

    /// On SIGTERM: `/readyz` answers 503 at once, no new connection is
    /// taken, and executions in flight get this many seconds to finish.
    #[arg(long, env = "AVAP_DRAIN_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_secs: u64,

    /// Seconds between `SyncCatalog` polls when the server offers no watch stream.
    #[arg(long, env = "AVAP_SYNC_POLL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_poll_secs: u64,

    /// How long start-up waits for the first sync before serving the built-in catalog.
    #[arg(long, env = "AVAP_SYNC_STARTUP_TIMEOUT_MS", default_value_t = 2000)]
    pub sync_startup_timeout_ms: u64,

    /// Accept a guest module older than the live one from a catalog without
    /// a manifest (the original servers'); with a manifest its serial
    /// orders guests and a roll-back is the brain's signed act.
    #[arg(long, env = "AVAP_ALLOW_GUEST_DOWNGRADE", default_value_t = false)]
    pub allow_guest_downgrade: bool,

    /// Capabilities granted to scripts, comma-separated: `http`, `db`
    /// (empty grants none).
    #[arg(long, env = "AVAP_CAPABILITIES", default_value = "http,db")]
    pub capabilities: List<Capability>,

    /// `host:port` destinations the `http` capability may reach whatever
    /// their address (loopback, private, ...), comma-separated.
    #[arg(long, env = "AVAP_HTTP_ALLOW", default_value = "")]
    pub http_allow: List<AllowEntry>,

    /// Timeout of one HTTP request (redirects included), in milliseconds;
    /// never beyond the execution's deadline.
    #[arg(long, env = "AVAP_HTTP_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_timeout_ms: u64,

    /// Largest HTTP response body a script may receive, in bytes.
    #[arg(long, env = "AVAP_HTTP_MAX_RESPONSE_BYTES", default_value_t = 1 << 20)]
    pub http_max_response_bytes: usize,

    /// HTTP requests one execution may make.
    #[arg(long, env = "AVAP_HTTP_MAX_REQUESTS", default_value_t = 10)]
    pub http_max_requests: u32,

    /// Outbound HTTP requests in flight at once, for the whole process.
    #[arg(long, env = "AVAP_HTTP_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// Name servers for the `http` capability (`ip:port`, comma-separated);
    /// empty: the system's (`/etc/resolv.conf`).
    #[arg(long, env = "AVAP_HTTP_DNS_SERVERS", default_value = "")]
    pub http_dns_servers: List<SocketAddr>,

    /// Database of the `db` capability: `postgres://...`, `sqlite:path` or
    /// `sqlite::memory:` (in-memory, for the life of the process).
    #[arg(long, env = "AVAP_DB_URL", default_value = "sqlite::memory:", hide_env_values = true)]
    pub db_url: String,

    /// Also store each package `/api/v1/compile` signs in this PostgreSQL
    /// database, in the original servers' table `avap_bytecode` (created if
    /// missing), as the original server did. Empty: store nothing.
    #[arg(long, env = "AVAP_COMPILE_STORE", default_value = "", hide_env_values = true)]
    pub compile_store: String,

    /// Schema of the compile store's `avap_bytecode` table; it is always
    /// named with it, never looked up through `search_path`.
    #[arg(long, env = "AVAP_COMPILE_STORE_SCHEMA", default_value = "public")]
    pub compile_store_schema: String,

    /// Connections in the database pool shared by all executions.
    #[arg(long, env = "AVAP_DB_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Timeout of one SQL statement, in milliseconds; never beyond the
    /// execution's deadline.
    #[arg(long, env = "AVAP_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_statement_timeout_ms: u64,

    /// Rows one statement may return.
    #[arg(long, env = "AVAP_DB_MAX_ROWS", default_value_t = 1000)]
    pub db_max_rows: usize,

    /// SQL statements one execution may run.
    #[arg(long, env = "AVAP_DB_MAX_QUERIES", default_value_t = 100)]
    pub db_max_queries: u32,

    /// DANGEROUS: run scripts with a PostgreSQL role that can reach the
    /// database server's files or programs (a superuser, say). Without it
    /// such a role is refused at start-up.
    #[arg(long, env = "AVAP_DB_ALLOW_PRIVILEGED_ROLE", default_value_t = false)]
    pub db_allow_privileged_role: bool,
}

impl Config {
    /// The built-in defaults: what the flags default to, with no
    /// environment variable read (tests start from this).
    pub fn defaults() -> Self {
        let matches = defaults_command().get_matches_from(["avap-host"]);
        // The defaults parse: the test `defaults_parse_and_read_no_environment` proves it.
        Config::from_arg_matches(&matches).unwrap_or_else(|e| panic!("the built-in defaults do not parse: {e}"))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Whether this host follows no definition server: `--standalone`, or
    /// `--dev` with no `BRAIN_HOST` named.
    pub fn is_standalone(&self) -> bool {
        self.standalone || (self.dev && self.brain_host.is_none())
    }

    /// Where compiled guests are kept ([`Config::cache_dir`]), if anywhere.
    pub fn artifact_dir(&self) -> Option<PathBuf> {
        match self.cache_dir.trim() {
            "off" => None,
            "" => std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
                .map(|d| d.join("avap-host")),
            dir => Some(PathBuf::from(dir)),
        }
    }

    /// The definition server's host name or address.
    pub fn brain_host(&self) -> &str {
        self.brain_host.as_deref().unwrap_or(DEFAULT_BRAIN_HOST)
    }

    /// Whether the definition server is on this machine: `BRAIN_HOST` is a
    /// loopback address or `localhost` (which [`Config::brain_url`] dials as
    /// 127.0.0.1 itself, asking no resolver). The published keys are
    /// trusted toward no other (`--dev`).
    pub fn brain_is_loopback(&self) -> bool {
        let host = self.brain_host();
        host.eq_ignore_ascii_case("localhost")
            || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `http(s)://host:port` of the definition server (`https` when
    /// `BRAIN_TLS_CA` is set). `localhost` is dialled as 127.0.0.1.
    pub fn brain_url(&self) -> String {
        let scheme = if self.brain_tls_ca.is_some() { "https" } else { "http" };
        let host = match self.brain_host() {
            h if h.eq_ignore_ascii_case("localhost") => "127.0.0.1",
            h => h,
        };
        format!("{scheme}://{host}:{}", self.brain_port)
    }

    /// The `http` capability's settings.
    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            allow: self.http_allow.0.clone(),
            timeout: Duration::from_millis(self.http_timeout_ms),
            max_response_bytes: self.http_max_response_bytes,
            max_requests: self.http_max_requests,
            max_redirects: HTTP_MAX_REDIRECTS,
            max_connections: self.http_max_connections,
            dns_servers: self.http_dns_servers.0.clone(),
        }
    }

    /// The `db` capability's settings.
    pub fn db(&self) -> DbConfig {
        DbConfig {
            url: self.db_url.clone(),
            max_connections: self.db_max_connections,
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            max_rows: self.db_max_rows,
            max_queries: self.db_max_queries,
            allow_privileged_role: self.db_allow_privileged_role,
        }
    }

    /// The front door's settings.
    pub fn front(&self) -> FrontConfig {
        FrontConfig {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
            max_inflight_body_bytes: self.max_inflight_body_bytes.max(self.max_body_bytes),
            cors_origins: self.cors_origins.iter().map(|o| o.0.clone()).collect(),
            api_tokens: self.api_tokens.0.clone(),
            drain_timeout: Duration::from_secs(self.drain_secs),
            loopback_names_only: self.bind.is_loopback(),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_memory_bytes: (self.max_memory_mb as usize) << 20,
            fuel: self.fuel,
            timeout: Duration::from_millis(self.timeout_ms),
            // The guest's input is the request body plus a small envelope.
            max_input_bytes: self.max_body_bytes.saturating_add(64 << 10),
            max_output_bytes: self.max_output_bytes,
            max_stdio_bytes: MAX_STDIO_BYTES,
            max_concurrency: self.max_concurrency,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
        }
    }
}

/// The flags with their environment variables taken away.
fn defaults_command() -> clap::Command {
    Config::command().mut_args(|arg| arg.env(None))
}

/// The definition server's name when `BRAIN_HOST` is unset (outside --dev).
pub const DEFAULT_BRAIN_HOST: &str = "avap-definition-engine";

/// Redirects the `http` capability follows per request (not a flag).
pub const HTTP_MAX_REDIRECTS: u32 = 5;

/// Capacity of each of the guest's stdout and stderr pipes (not a flag).
pub const MAX_STDIO_BYTES: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_read_no_environment() {
        assert!(Config::command().get_arguments().any(|a| a.get_env().is_some()), "the flags do read variables");
        let command = defaults_command();
        let readers: Vec<_> = command.get_arguments().filter_map(|a| a.get_env()).collect();
        assert!(readers.is_empty(), "the defaults must not read {readers:?}");
        let c = Config::defaults();
        assert_eq!(c.max_concurrency, 32);
        assert_eq!(&*c.capabilities, &[Capability::Http, Capability::Db]);
        assert!(c.http_allow.is_empty() && c.api_tokens.is_empty());
        assert_eq!(Limits::default().max_output_bytes, c.max_output_bytes);
    }

    #[test]
    fn lists_parse_with_the_flags() {
        let c =
            Config::try_parse_from(["avap-host", "--capabilities", " db ,", "--http-allow", "a.test:80,[::1]:8080"])
                .expect("valid flags");
        assert_eq!(&*c.capabilities, &[Capability::Db]);
        assert_eq!(c.http_allow.iter().map(|e| e.port).collect::<Vec<_>>(), [80, 8080]);
        let none = Config::try_parse_from(["avap-host", "--capabilities", ""]).expect("empty grants none");
        assert!(none.capabilities.is_empty());
        for bad in [["--capabilities", "http,fs"], ["--http-allow", "nohost"], ["--cors-origins", "*"]] {
            let err = Config::try_parse_from(["avap-host", bad[0], bad[1]]).expect_err("refused at parse time");
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
    }

    /// The README's configuration table gives the same defaults as the flags.
    #[test]
    fn the_readme_table_matches_the_flags() {
        let readme = include_str!("../../README.md");
        let command = Config::command();
        let mut checked = 0;
        for line in readme.lines().filter(|l| l.starts_with("| `--")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (flag, env, default) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'), cells[3]);
            let arg = command
                .get_arguments()
                .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == flag))
                .unwrap_or_else(|| panic!("README lists {flag}, which is not a flag"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env), "{flag}");
            let want: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            let want = want.join(",");
            let shown = default.split(['(', ' ']).next().unwrap_or_default().trim_matches('`');
            if want.is_empty() {
                assert!(shown.starts_with("empty"), "{flag}: README says {default}, the flag defaults to nothing");
            } else {
                assert_eq!(shown, want, "{flag}: README says {default}");
            }
            checked += 1;
        }
        let flags = command.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"));
        assert_eq!(checked, flags.count(), "every flag is in the README table");
    }
}
