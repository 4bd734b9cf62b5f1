//! PostgreSQL for `ormDirect`, through tokio-postgres.
//!
//! **The role.** Every connection, before it serves a statement, inspects
//! its role ([`ROLE_CHECK`]): a superuser, a role that may create roles (and
//! so grant itself anything), a member of `pg_read_server_files`,
//! `pg_write_server_files` or `pg_execute_server_program`, or a role granted
//! the server's file functions can reach the database server's files or run
//! programs on it, and every script would inherit that. Such a connection is
//! refused (the host refuses to start with one) unless the operator passed
//! `--db-allow-privileged-role`. `deploy/postgres-role.sql` makes a role
//! that passes.
//!
//! **One message, one cap.** The connection reads the server through
//! [`Capped`], which parses the protocol's framing (a type byte and a
//! 4-byte length before each message) and fails the read as soon as a
//! header announces a message larger than [`MAX_MESSAGE_BYTES`], before a
//! byte of its body is buffered. So no row (a `DataRow` message), notice or
//! error can cost the host more than about twice that, whatever the query
//! computes. The connection is closed, and the script gets a catchable
//! error. With TLS the cap sits above TLS, on the plain messages.
//!
//! **Sessions.** When a connection goes back to the pool the host runs
//! [`RESET`], so nothing one statement does to its session reaches the
//! next. A connection whose statement was abandoned (the host-side timeout
//! fired) is closed, not reused. The statement timeout is set per
//! connection at start-up (`-c statement_timeout=...`) and cut per statement
//! to what is left of the execution's deadline.

use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use futures_util::{StreamExt, pin_mut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, SimpleQueryMessage};

use super::{DbConfig, Failure, Param, Reply};
use avap_abi::MAX_REPLY_BYTES;

mod capped;
mod types;

use capped::CappedTls;
pub use capped::{Capped, CappedTlsStream};
use types::{Bound, RawCell, bind, cell};

/// The largest message the server may send, in bytes: the reply cap plus
/// room for the row's framing.
pub const MAX_MESSAGE_BYTES: usize = MAX_REPLY_BYTES + (64 << 10);

/// Run on every connection given back to the pool, one after the other
/// (`DISCARD ALL` cannot share a transaction): it resets settings, the
/// session's role, prepared statements, cursors, temporary tables,
/// listeners, advisory locks and plans.
pub const RESET: &[&str] = &["ROLLBACK", "DISCARD ALL"];

/// What makes a role privileged, read from the server for the connection's
/// role and every role it is a member of (it can `SET ROLE` to any of them,
/// or inherits their rights): superuser, createrole (it can grant itself
/// anything), replication (it reads every change of every table),
/// bypassrls; the predefined roles that reach the server's files and
/// programs, every table's data, other sessions or other servers; and the
/// functions that read or write server files or connect to other servers.
/// Each column is a comma-separated list, empty when clear.
pub const ROLE_CHECK: &str = "\
WITH reach AS (
  SELECT r.rolname::text AS name, r.rolsuper, r.rolcreaterole, r.rolreplication, r.rolbypassrls
  FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
SELECT current_user::text,
  coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM reach WHERE rolsuper), ''),
  coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM reach WHERE rolcreaterole), ''),
  coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM reach WHERE rolreplication), ''),
  coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM reach WHERE rolbypassrls), ''),
  coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM reach WHERE name IN ('pg_read_server_files',
    'pg_write_server_files', 'pg_execute_server_program', 'pg_read_all_data', 'pg_write_all_data',
    'pg_signal_backend', 'pg_create_subscription', 'pg_monitor', 'pg_read_all_settings')), ''),
  coalesce((SELECT string_agg(DISTINCT p.proname::text, ',') FROM pg_catalog.pg_proc p
    WHERE p.proname IN ('pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file', 'lo_import',
      'lo_export', 'pg_ls_logdir', 'pg_ls_waldir', 'pg_ls_tmpdir', 'pg_ls_archive_statusdir',
      'pg_ls_logicalsnapdir', 'pg_ls_logicalmapdir', 'pg_ls_replslotdir', 'pg_file_write', 'pg_file_rename',
      'pg_file_unlink', 'pg_file_sync', 'pg_logdir_ls', 'dblink_connect', 'dblink_connect_u', 'dblink',
      'dblink_exec')
      AND pg_catalog.has_function_privilege(current_user, p.oid, 'EXECUTE')), ''),
  current_setting('server_version_num')::int";

/// PostgreSQL 15 and later: parameters the role (or PUBLIC) was granted to
/// set or `ALTER SYSTEM`, which are otherwise a superuser's.
pub const PARAMETER_CHECK: &str = "\
SELECT coalesce(string_agg(DISTINCT a.parname::text, ','), '') FROM pg_catalog.pg_parameter_acl a,
  LATERAL pg_catalog.aclexplode(a.paracl) x
WHERE x.grantee = 0 OR pg_catalog.pg_has_role(current_user, x.grantee, 'MEMBER')";

/// How long start-up waits for the first connection (the role check).
const STARTUP_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(2);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Postgres {
    pool: Pool<Manager>,
}

/// Why the host would not use a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Privileged(String),
    #[error("cannot connect to the database: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("bad database configuration: {0}")]
    Config(String),
}

impl Postgres {
    pub async fn connect(config: &DbConfig) -> anyhow::Result<Self> {
        let mut pg = Config::from_str(config.url.trim()).map_err(|e| anyhow::anyhow!("AVAP_DB_URL: {e}"))?;
        pg.application_name("avap-host");
        // The URL's own options (a search_path, say) stay; the timeout is added.
        let timeout = format!("-c statement_timeout={}", config.statement_timeout.as_millis().max(1));
        let options = match pg.get_options() {
            Some(own) if !own.trim().is_empty() => format!("{own} {timeout}"),
            _ => timeout,
        };
        pg.options(options);
        pg.connect_timeout(CONNECT_TIMEOUT);
        let tls = tls_rule(&mut pg, "AVAP_DB_URL");
        let manager =
            Manager { config: pg, tls: tls.then(rustls_connector), allow_privileged: config.allow_privileged_role };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections as usize)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()?;
        // The role check at start-up: refuse now rather than on every
        // statement. A server that is down is not a reason not to start.
        match tokio::time::timeout(STARTUP_CHECK_TIMEOUT, pool.get()).await {
            Ok(Ok(_conn)) => {}
            Ok(Err(managed::PoolError::Backend(ConnectError::Privileged(why)))) => anyhow::bail!("{why}"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the database is not reachable at start-up; every connection made later is checked")
            }
            Err(_) => tracing::warn!("the database did not answer at start-up; every connection made later is checked"),
        }
        Ok(Postgres { pool })
    }

    pub(crate) async fn run(
        &self,
        sql: &str,
        params: &[Param<'_>],
        limit: Duration,
        config: &DbConfig,
    ) -> Result<Vec<u8>, Failure> {
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        // Marked until the statement is done: a call dropped mid-statement
        // leaves it marked, and the pool closes the connection.
        conn.in_flight = true;
        let result = run_on(&conn, sql, params, limit, config).await;
        conn.in_flight = false;
        if conn.over_cap.load(Ordering::Relaxed) {
            conn.closed = true;
            return Err(Failure::Limit(format!(
                "the database sent a row larger than the reply cap of {MAX_REPLY_BYTES} bytes; select fewer or narrower columns"
            )));
        }
        result
    }
}

/// The one rule for TLS to PostgreSQL, for every connection the host opens
/// (the `db` capability's pool and the compile store): TLS, with the
/// certificate verified against the web PKI roots, whenever a server is not
/// on this machine, unless the URL says `sslmode=disable` (logged as a
/// warning); plaintext to loopback and Unix sockets unless the URL asks for
/// TLS. `prefer` (libpq's default) is never kept as it is: it would fall back
/// to plaintext, and answer a cleartext password challenge, for whoever
/// sits on the path. So a password travels in the clear only to this
/// machine, or where the operator wrote `sslmode=disable`. Sets the mode on
/// `pg` and returns whether TLS is on. `what` names the setting for the log.
pub(crate) fn tls_rule(pg: &mut Config, what: &str) -> bool {
    let local = pg.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    });
    let tls = match pg.get_ssl_mode() {
        SslMode::Disable => {
            if !local {
                tracing::warn!(
                    "{what} says sslmode=disable for a database server that is not on this machine: \
                     statements, rows and the password travel in plaintext"
                );
            }
            false
        }
        SslMode::Prefer => !local,
        _ => true,
    };
    pg.ssl_mode(if tls { SslMode::Require } else { SslMode::Disable });
    tls
}

pub(crate) fn rustls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => tokio_postgres_rustls::MakeRustlsConnect::new(config),
        // The ring provider supports the default versions; this cannot fail.
        Err(_) => tokio_postgres_rustls::MakeRustlsConnect::with_webpki_roots(),
    }
}

async fn run_on(
    conn: &Connection,
    sql: &str,
    params: &[Param<'_>],
    limit: Duration,
    config: &DbConfig,
) -> Result<Vec<u8>, Failure> {
    let client = &conn.client;
    // The server's own timeout, cut to what is left of the deadline (reset
    // when the connection goes back to the pool).
    if limit < config.statement_timeout {
        client
            .execute("SELECT set_config('statement_timeout', $1, false)", &[&format!("{}ms", limit.as_millis().max(1))])
            .await
            .map_err(|e| pg_error(&e, conn))?;
    }
    let statement = client.prepare(sql).await.map_err(|e| pg_error(&e, conn))?;
    let types = statement.params();
    if types.len() != params.len() {
        return Err(Failure::Message(format!(
            "the statement takes {} parameters but the template gives {}",
            types.len(),
            params.len()
        )));
    }
    let mut bound: Vec<Bound<'_>> = Vec::with_capacity(params.len());
    for (i, (value, ty)) in params.iter().zip(types).enumerate() {
        bound.push(bind(value, ty).map_err(|e| Failure::Message(format!("parameter {}: {e}", i + 1)))?);
    }
    let args = bound.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync));
    if statement.columns().is_empty() {
        let n = client.execute_raw(&statement, args).await.map_err(|e| pg_error(&e, conn))?;
        return Ok(Reply::affected(n));
    }
    let columns: Vec<(String, Type)> =
        statement.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect();
    let mut reply = Reply::rows(columns.iter().map(|(n, _)| n.as_str()), config.max_rows);
    let rows = client.query_raw(&statement, args).await.map_err(|e| pg_error(&e, conn))?;
    pin_mut!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| pg_error(&e, conn))?;
        let mut cells = Vec::with_capacity(columns.len());
        for (i, (name, ty)) in columns.iter().enumerate() {
            let raw: RawCell<'_> = row.try_get(i).map_err(|e| Failure::Message(format!("column '{name}': {e}")))?;
            cells.push(cell(name, ty, raw.0)?);
        }
        reply.push_row(cells)?;
    }
    Ok(reply.finish())
}

/// A PostgreSQL error as the script sees it, by its SQLSTATE. Connection
/// details stay out.
fn pg_error(err: &tokio_postgres::Error, conn: &Connection) -> Failure {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::QUERY_CANCELED {
            return Failure::Timeout;
        }
        return Failure::Message(format!("database error: {}", db.message()));
    }
    if conn.over_cap.load(Ordering::Relaxed) {
        return Failure::Limit(format!(
            "the database sent a row larger than the reply cap of {MAX_REPLY_BYTES} bytes; select fewer or narrower columns"
        ));
    }
    if err.is_closed() {
        return Failure::Message("the database connection closed".into());
    }
    Failure::Message(format!("database error: {err}"))
}

fn pool_error(err: managed::PoolError<ConnectError>) -> Failure {
    match err {
        managed::PoolError::Timeout(_) => Failure::Message("no database connection became free in time".into()),
        managed::PoolError::Backend(ConnectError::Privileged(why)) => Failure::Refused(why),
        managed::PoolError::Backend(e) => Failure::Message(format!("the database is unavailable: {e}")),
        other => Failure::Message(format!("the database is unavailable: {other}")),
    }
}

/// One pooled connection.
pub struct Connection {
    client: Client,
    /// Set by [`Capped`] when the server announced an over-cap message.
    over_cap: Arc<AtomicBool>,
    /// A statement is running (or was abandoned mid-way).
    in_flight: bool,
    /// Known unusable.
    closed: bool,
}

/// Makes and recycles connections for the pool.
pub struct Manager {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    allow_privileged: bool,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = ConnectError;

    async fn create(&self) -> Result<Connection, ConnectError> {
        let over_cap = Arc::new(AtomicBool::new(false));
        let client = self.open(over_cap.clone()).await?;
        check_role(&client, self.allow_privileged).await?;
        Ok(Connection { client, over_cap, in_flight: false, closed: false })
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<ConnectError> {
        if conn.in_flight || conn.closed || conn.client.is_closed() {
            return Err(RecycleError::message("abandoned or closed"));
        }
        for statement in RESET {
            conn.client.batch_execute(statement).await.map_err(|e| RecycleError::Backend(e.into()))?;
        }
        // DISCARD ALL dropped the statements tokio-postgres caches for type lookups.
        conn.client.clear_type_cache();
        Ok(())
    }
}

impl Manager {
    /// Connects to the first host that answers, through [`Capped`].
    async fn open(&self, over_cap: Arc<AtomicBool>) -> Result<Client, ConnectError> {
        use tokio_postgres::config::Host;
        let (hosts, addrs, ports) = (self.config.get_hosts(), self.config.get_hostaddrs(), self.config.get_ports());
        let mut last = ConnectError::Config("no host in the database URL".into());
        for i in 0..hosts.len().max(addrs.len()) {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let result = match (hosts.get(i), addrs.get(i)) {
                #[cfg(unix)]
                (Some(Host::Unix(dir)), _) => {
                    let path = dir.join(format!(".s.PGSQL.{port}"));
                    match tokio::net::UnixStream::connect(path).await {
                        Ok(unix) => self.handshake(unix, "localhost", over_cap.clone()).await,
                        Err(e) => Err(e.into()),
                    }
                }
                (host, addr) => {
                    // `hostaddr`, when given, is where to connect; `host` stays
                    // the name TLS verifies.
                    let name = match host {
                        Some(Host::Tcp(name)) => name.clone(),
                        _ => addr.map(|ip| ip.to_string()).unwrap_or_default(),
                    };
                    let target = addr.map_or_else(|| name.clone(), |ip| ip.to_string());
                    match tokio::net::TcpStream::connect((target.as_str(), port)).await {
                        Ok(tcp) => {
                            let _ = tcp.set_nodelay(true);
                            self.handshake(tcp, &name, over_cap.clone()).await
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            };
            match result {
                Ok(client) => return Ok(client),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn handshake<S>(&self, stream: S, host: &str, over_cap: Arc<AtomicBool>) -> Result<Client, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match &self.tls {
            None => {
                let capped = Capped::new(stream, over_cap);
                let (client, connection) = self.config.connect_raw(capped, NoTls).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
            Some(tls) => {
                let mut tls = tls.clone();
                let inner =
                    <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut tls, host)
                        .map_err(|e| ConnectError::Config(e.to_string()))?;
                let (client, connection) = self.config.connect_raw(stream, CappedTls { inner, over_cap }).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
        }
    }
}

/// Drives a connection's I/O until it closes. Notices and notifications a
/// script's statement raises are dropped here (tokio-postgres would log
/// each whole at `info`: a script could flood or forge the host's log).
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notice(notice)) => {
                let text: String = notice.message().chars().take(200).collect();
                tracing::debug!(notice = %text.escape_debug(), "database notice dropped");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "database connection closed");
                return;
            }
        }
    }
}

/// The first row of a simple query, as text fields.
async fn first_row(client: &Client, sql: &str) -> Result<Vec<String>, ConnectError> {
    let messages = client.simple_query(sql).await?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| ConnectError::Config("the role check returned no row".into()))?;
    Ok((0..row.len()).map(|i| row.get(i).unwrap_or_default().to_string()).collect())
}

/// Runs [`ROLE_CHECK`] (and [`PARAMETER_CHECK`]) and refuses a privileged
/// role unless allowed.
async fn check_role(client: &Client, allow: bool) -> Result<(), ConnectError> {
    let row = first_row(client, ROLE_CHECK).await?;
    let field = |i: usize| row.get(i).map(String::as_str).unwrap_or_default();
    let role = field(0);
    let mut reasons = Vec::new();
    for (i, what) in [
        (1, "is or may become a superuser"),
        (2, "may create roles (and grant itself any of them)"),
        (3, "may read every change of every table (replication)"),
        (4, "bypasses row-level security"),
        (5, "is a member of"),
        (6, "may execute"),
    ] {
        if !field(i).is_empty() {
            reasons.push(format!("{what} ({})", field(i)));
        }
    }
    if field(7).parse::<u32>().is_ok_and(|v| v >= 150_000) {
        let granted = first_row(client, PARAMETER_CHECK).await?;
        if let Some(p) = granted.first().filter(|p| !p.is_empty()) {
            reasons.push(format!("may set superuser parameters ({p})"));
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    let why = format!(
        "the database role '{role}' {}: it can reach the database server's files, programs, other sessions or \
         other servers, and every script would inherit that. Connect as a least-privileged role \
         (deploy/postgres-role.sql), or pass --db-allow-privileged-role (AVAP_DB_ALLOW_PRIVILEGED_ROLE=true) to run \
         with it anyway",
        reasons.join("; ")
    );
    if allow {
        tracing::warn!(role, reasons = %reasons.join("; "), "DANGER: running scripts with a privileged database role (--db-allow-privileged-role)");
        return Ok(());
    }
    Err(ConnectError::Privileged(why))
}
