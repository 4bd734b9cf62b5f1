//! `--compile-store`: keeps the packages `/api/v1/compile` signs in
//! PostgreSQL, in the original servers' table, as the original language
//! server did (its suite reads them back from there).
//!
//! The table is the original's: `avap_bytecode(command_name UNIQUE,
//! bytecode, version, compiled_at, source_hash, is_verified)`, created if it
//! is missing; a second compile of the same name replaces the package. This
//! is the host's own connection, apart from the scripts' `db` capability:
//! scripts never see it. Off by default.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;

/// How long one store (connecting included) may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE: &str = "CREATE TABLE IF NOT EXISTS avap_bytecode (
    id SERIAL PRIMARY KEY,
    command_name VARCHAR(100) UNIQUE NOT NULL,
    bytecode BYTEA,
    version INTEGER DEFAULT 1,
    compiled_at TIMESTAMP DEFAULT NOW(),
    source_hash VARCHAR(64),
    is_verified BOOLEAN DEFAULT FALSE
)";

const UPSERT: &str = "INSERT INTO avap_bytecode (command_name, bytecode, source_hash, compiled_at)
    VALUES ($1, $2, $3, NOW())
    ON CONFLICT (command_name)
    DO UPDATE SET bytecode = EXCLUDED.bytecode, source_hash = EXCLUDED.source_hash, compiled_at = NOW()";

/// Longest name stored (the column's width).
pub const MAX_NAME_CHARS: usize = 100;

/// The store: one connection, opened on first use and again after it
/// breaks; compiles are rare, so they take turns.
pub struct CompileStore {
    config: tokio_postgres::Config,
    tls: bool,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl std::fmt::Debug for CompileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileStore").field("tls", &self.tls).finish_non_exhaustive()
    }
}

/// Why a package was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the compile store did not answer within {STORE_TIMEOUT:?}")]
    Timeout,
    #[error("compile store: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl CompileStore {
    /// `None` for an empty URL. A URL that does not parse, or that is not
    /// PostgreSQL, is a configuration error.
    pub fn from_url(url: &str) -> anyhow::Result<Option<CompileStore>> {
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("AVAP_COMPILE_STORE must be a postgres:// URL");
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| anyhow::anyhow!("AVAP_COMPILE_STORE does not parse: {e}"))?;
        let tls = !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer);
        config.ssl_mode(if tls { SslMode::Require } else { SslMode::Disable });
        config.connect_timeout(STORE_TIMEOUT);
        Ok(Some(CompileStore { config, tls, client: Mutex::new(None) }))
    }

    /// Stores `package` (the signed package of `source`) under `name`.
    pub async fn store(&self, name: &str, source: &str, package: &[u8]) -> Result<(), StoreError> {
        let hash = hex::encode(Sha256::digest(source.as_bytes()));
        let attempt = async {
            let mut slot = self.client.lock().await;
            let client = match slot.take() {
                Some(client) if !client.is_closed() => client,
                _ => self.connect().await?,
            };
            client.execute(UPSERT, &[&name, &package, &hash]).await?;
            // Kept for the next compile only once it worked: a failed
            // connection is opened again next time.
            *slot = Some(client);
            Ok::<(), tokio_postgres::Error>(())
        };
        tokio::time::timeout(STORE_TIMEOUT, attempt).await.map_err(|_| StoreError::Timeout)?.map_err(StoreError::from)
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let client = if self.tls {
            let (client, connection) = self.config.connect(crate::capability::db::postgres::rustls_connector()).await?;
            tokio::spawn(async move { drop(connection.await) });
            client
        } else {
            let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move { drop(connection.await) });
            client
        };
        client.batch_execute(CREATE).await?;
        Ok(client)
    }
}
