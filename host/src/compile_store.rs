//! `--compile-store`: keeps the packages `/api/v1/compile` signs in
//! PostgreSQL, in the original servers' table, as the original language
//! server did (its suite reads them back from there).
//!
//! The table is the original's, `avap_bytecode(command_name UNIQUE,
//! bytecode, version, compiled_at, source_hash, is_verified)`, plus an
//! `owner` column; it is created if missing (the column added if the table
//! is the original's). It is always named with its schema
//! (`--compile-store-schema`, `public` by default), never found through
//! the connection's `search_path`, so a schema earlier on that path cannot
//! take the writes. This is the host's own connection, apart from the
//! scripts' `db` capability: scripts never see it. TLS follows the one rule
//! of [`crate::capability::db::postgres::tls_rule`]. Off by default.
//!
//! **Who may replace what.** Each row records the caller that stored it:
//! `token:<first 16 hex digits of SHA-256 of its API token>`, or
//! `anonymous` on a host without `AVAP_API_TOKENS` (where every caller is
//! the same principal). A compile of a name stored by another owner is
//! refused (409 `conflict`) and the row is left as it was; rows with no
//! owner (written by the original server, or by a host before owners
//! existed) are replaced by nobody: an operator deletes them or sets their
//! owner.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// How long one store (connecting included) may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the table (the original's columns and `owner`) in `{schema}`.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS {schema}.avap_bytecode (
    id SERIAL PRIMARY KEY,
    command_name VARCHAR(100) UNIQUE NOT NULL,
    bytecode BYTEA,
    version INTEGER DEFAULT 1,
    compiled_at TIMESTAMP DEFAULT NOW(),
    source_hash VARCHAR(64),
    is_verified BOOLEAN DEFAULT FALSE,
    owner TEXT
);
ALTER TABLE {schema}.avap_bytecode ADD COLUMN IF NOT EXISTS owner TEXT";

/// Stores a package; replaces a row only of the same owner (no row
/// returned: someone else's).
const UPSERT: &str =
    "INSERT INTO {schema}.avap_bytecode AS stored (command_name, bytecode, source_hash, compiled_at, owner)
    VALUES ($1, $2, $3, NOW(), $4)
    ON CONFLICT (command_name)
    DO UPDATE SET bytecode = EXCLUDED.bytecode, source_hash = EXCLUDED.source_hash, compiled_at = NOW()
    WHERE stored.owner = EXCLUDED.owner
    RETURNING id";

/// Longest name stored (the column's width).
pub const MAX_NAME_CHARS: usize = 100;

/// The store: one connection, opened on first use and again after it
/// breaks; compiles are rare, so they take turns.
pub struct CompileStore {
    config: tokio_postgres::Config,
    tls: bool,
    /// The statements, with the schema written in.
    create: String,
    upsert: String,
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
    #[error("a package named '{0}' was stored by another caller; it is not replaced")]
    OwnedByAnother(String),
}

impl CompileStore {
    /// `None` for an empty URL. A URL that does not parse, that is not
    /// PostgreSQL, or a schema that is not a plain identifier is a
    /// configuration error.
    pub fn from_url(url: &str, schema: &str) -> anyhow::Result<Option<CompileStore>> {
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("AVAP_COMPILE_STORE must be a postgres:// URL");
        }
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            anyhow::bail!("AVAP_COMPILE_STORE_SCHEMA must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 63)");
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| anyhow::anyhow!("AVAP_COMPILE_STORE does not parse: {e}"))?;
        let tls = crate::capability::db::postgres::tls_rule(&mut config, "AVAP_COMPILE_STORE");
        config.connect_timeout(STORE_TIMEOUT);
        let quoted = format!("\"{schema}\"");
        Ok(Some(CompileStore {
            config,
            tls,
            create: CREATE.replace("{schema}", &quoted),
            upsert: UPSERT.replace("{schema}", &quoted),
            client: Mutex::new(None),
        }))
    }

    /// Whether the store's connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Stores `package` (the signed package of `source`) under `name` for
    /// `owner`; a row of another owner is left alone
    /// ([`StoreError::OwnedByAnother`]).
    pub async fn store(&self, name: &str, source: &str, package: &[u8], owner: &str) -> Result<(), StoreError> {
        let hash = hex::encode(Sha256::digest(source.as_bytes()));
        let attempt = async {
            let mut slot = self.client.lock().await;
            let client = match slot.take() {
                Some(client) if !client.is_closed() => client,
                _ => self.connect().await?,
            };
            let stored = client.query_opt(&self.upsert, &[&name, &package, &hash, &owner]).await?;
            // Kept for the next compile only once it worked: a failed
            // connection is opened again next time.
            *slot = Some(client);
            Ok::<bool, tokio_postgres::Error>(stored.is_some())
        };
        let stored = tokio::time::timeout(STORE_TIMEOUT, attempt).await.map_err(|_| StoreError::Timeout)??;
        if stored { Ok(()) } else { Err(StoreError::OwnedByAnother(name.to_string())) }
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
        client.batch_execute(&self.create).await?;
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tls_rule_with_the_db_capability() {
        let tls = |url: &str| CompileStore::from_url(url, "public").expect("valid").expect("a store").tls();
        // The default (`prefer`) is TLS for a server elsewhere, plaintext here.
        assert!(tls("postgres://u:pw@db.example.com/avap"));
        assert!(tls("postgres://u:pw@10.1.2.3:5432/avap?sslmode=prefer"));
        assert!(!tls("postgres://u:pw@127.0.0.1/avap"));
        assert!(!tls("postgres://u:pw@localhost/avap"));
        assert!(tls("postgres://u:pw@127.0.0.1/avap?sslmode=require"));
        assert!(!tls("postgres://u:pw@db.example.com/avap?sslmode=disable"), "said explicitly (and logged)");
    }

    #[test]
    fn the_schema_is_a_plain_identifier() {
        for bad in ["", "Public", "a-b", "x\"; DROP TABLE t; --", "1abc", &"s".repeat(64)] {
            assert!(CompileStore::from_url("postgres://u@127.0.0.1/d", bad).is_err(), "{bad}");
        }
        let store = CompileStore::from_url("postgres://u@127.0.0.1/d", "avap_store").expect("ok").expect("store");
        assert!(store.upsert.contains("INSERT INTO \"avap_store\".avap_bytecode"), "{}", store.upsert);
        assert!(store.create.contains("CREATE TABLE IF NOT EXISTS \"avap_store\".avap_bytecode"));
    }
}
