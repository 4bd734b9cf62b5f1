//! A host in this process: the same `AppState`, router, guest module and
//! sandbox as `avap-host`, reached without a socket (`tower`'s `oneshot`
//! on the host's own router), so a script behaves here exactly as on the
//! fleet: the same parser, limits, capabilities and errors.
//!
//! What differs from a deployed host, on purpose:
//! - it never contacts a definition server (standalone);
//! - its keys are random per process: nothing it signs is valid anywhere
//!   else, and it needs no secret from the user;
//! - capabilities are denied unless asked for: `--db URL` grants the
//!   database, `--http` (public addresses only) or `--http-allow
//!   host:port` (that destination whatever its address) grants HTTP;
//! - `--catalog DIR` builds the catalog from the folder with the brain's
//!   own code and applies it with the host's own verification, as a sync
//!   would; a folder's `guest-vm.wasm` is not used (the guest is the one
//!   built into this binary).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use avap_host::{AppState, Config};
use avap_wire::catalog::{TYPE_GUEST_VM, version_hash};
use avap_wire::keys::{KeyScheme, Keys};
use axum::body::Body;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// What the sandbox may reach.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Grants {
    /// Grant the database capability on this database: `postgres://...`,
    /// `sqlite:path` or `sqlite::memory:` (also `AVAP_CLI_DB_URL`, which
    /// keeps a password out of `ps` and the shell's history).
    #[arg(long, value_name = "URL", env = "AVAP_CLI_DB_URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Grant the HTTP capability (public addresses only, as on a host).
    #[arg(long)]
    pub http: bool,
    /// Grant HTTP to this `host:port` whatever its address (loopback, a
    /// private network); repeatable. Implies `--http`.
    #[arg(long = "http-allow", value_name = "HOST:PORT")]
    pub http_allow: Vec<String>,
    /// Let the database role be a superuser or own the database (the host
    /// refuses that by default).
    #[arg(long)]
    pub db_allow_privileged_role: bool,
    /// Wall-clock cap of one execution, in milliseconds (default: the
    /// host's, `AVAP_TIMEOUT_MS` or 1000, so a script that times out on a
    /// host times out here).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: Option<u64>,
    /// A catalog folder: its `<name>.avap` commands are live, as a
    /// definition server serving that folder would make them.
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<std::path::PathBuf>,
}

/// A random secret of `n` hex digits.
fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes).chars().take(n).collect())
}

/// The host's configuration for a local sandbox with `grants`: the host's
/// own defaults (and `AVAP_*` environment), then what this tool decides.
pub fn config(grants: &Grants) -> anyhow::Result<Config> {
    let mut config = <Config as clap::Parser>::try_parse_from(["avap-host", "--standalone"])
        .context("the host's settings from the environment")?;
    config.internal_key = random_hex(64)?;
    config.api_key = random_hex(32)?;
    config.dev = false;
    config.original_servers = false;
    config.api_tokens = Default::default();
    if let Some(ms) = grants.timeout_ms {
        config.timeout_ms = ms;
    }
    let mut capabilities = Vec::new();
    if let Some(url) = &grants.db {
        config.db_url = url.clone();
        config.db_allow_privileged_role = grants.db_allow_privileged_role;
        capabilities.push("db");
    }
    if grants.http || !grants.http_allow.is_empty() {
        capabilities.push("http");
        config.http_allow = grants.http_allow.join(",").parse().map_err(|e| anyhow!("--http-allow: {e}"))?;
    }
    config.capabilities = capabilities.join(",").parse().map_err(|e| anyhow!("capabilities: {e}"))?;
    Ok(config)
}

/// The host's state and router in this process.
pub struct Local {
    pub state: Arc<AppState>,
    pub config: Config,
    router: axum::Router,
}

impl Local {
    /// Builds the host (engine, guest, capabilities) and applies the
    /// catalog folder, if any.
    pub async fn start(grants: &Grants) -> anyhow::Result<Local> {
        let config = config(grants)?;
        let state = AppState::new(&config).await?;
        let local = Local { router: avap_host::api::router(state.clone()), state, config };
        if let Some(dir) = &grants.catalog {
            local.load_catalog(dir).await?;
        }
        Ok(local)
    }

    /// Builds `dir`'s catalog as the brain does, seals it under a new
    /// serial and applies it as a sync would.
    pub async fn load_catalog(&self, dir: &Path) -> anyhow::Result<()> {
        let keys = Keys::new(self.config.internal_key.as_bytes(), KeyScheme::Separated);
        let signer = avap_brain::catalog::Signer { keys: &keys, guest_key: None };
        let mut built = avap_brain::catalog::build(&signer, Some(dir)).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            anyhow!("the catalog folder {} has problems:\n{}", dir.display(), lines.join("\n"))
        })?;
        if built.commands.iter().any(|c| c.r#type == TYPE_GUEST_VM) {
            eprintln!(
                "avap: {}: guest-vm.wasm is not used here; scripts run on the guest built into avap",
                dir.display()
            );
            built.commands.retain(|c| c.r#type != TYPE_GUEST_VM);
            built.content_hash = version_hash(&built.commands);
            built.guest = None;
            built.guest_signature = None;
        }
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1);
        let issued = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let sealed = avap_brain::catalog::seal(&keys, &built, serial, issued).map_err(|e| anyhow!("{e}"))?;
        self.state.apply_catalog(sealed).await.map_err(|e| anyhow!("the catalog was refused: {e}"))?;
        Ok(())
    }

    /// `POST /api/v1/execute[?query]` with `body`, through the host's
    /// router: the status and the response body.
    pub async fn execute(&self, body: &Value, query: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let uri = match query {
            Some(q) if !q.is_empty() => format!("/api/v1/execute?{q}"),
            _ => "/api/v1/execute".to_string(),
        };
        self.request("POST", &uri, serde_json::to_vec(body)?).await
    }

    /// Any request to the host's router.
    pub async fn request(&self, method: &str, uri: &str, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| anyhow!("reading the response: {e}"))?.to_bytes();
        if bytes.is_empty() {
            return Ok((status, Value::Null));
        }
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok((status, value))
    }
}

/// The flags that grant each capability a response says was not granted
/// (in its `error` or a command log's), once each, in a fixed order: the
/// host's message names the capability, this tool's flags are its own.
pub fn capability_hints(response: &Value) -> Vec<&'static str> {
    let mut texts: Vec<&str> = response.get("error").and_then(Value::as_str).into_iter().collect();
    if let Some(logs) = response.get("logs").and_then(Value::as_array) {
        texts.extend(logs.iter().filter_map(|log| log.get("error").and_then(Value::as_str)));
    }
    let denied = |name: &str| {
        let needle = format!("capability '{name}' is not granted");
        texts.iter().any(|t| t.contains(&needle))
    };
    let mut hints = Vec::new();
    if denied("db") {
        hints.push(
            "hint: the database is granted only when asked: add --db URL (--db sqlite::memory: for a \
             scratch database per execution, --db sqlite:FILE, --db postgres://...; or AVAP_CLI_DB_URL)",
        );
    }
    if denied("http") {
        hints.push(
            "hint: HTTP is granted only when asked: add --http (public addresses) or --http-allow \
             HOST:PORT (that destination, loopback or private included)",
        );
    }
    hints
}

/// The execute body: `script`, `variables` and the request parameters as
/// top-level keys (what `addParam` reads after the query string).
pub fn execute_body(
    script: &str,
    variables: serde_json::Map<String, Value>,
    params: serde_json::Map<String, Value>,
) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    body.insert("script".into(), Value::String(script.to_string()));
    if !variables.is_empty() {
        body.insert("variables".into(), Value::Object(variables));
    }
    for (k, v) in params {
        if matches!(k.as_str(), "script" | "variables" | "package") {
            bail!("a request parameter cannot be named '{k}': the host reads that key itself");
        }
        body.insert(k, v);
    }
    Ok(Value::Object(body))
}
