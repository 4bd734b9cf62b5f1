//! The `db` capability: `ormDirect`, one SQL statement on the host's
//! database, PostgreSQL (`AVAP_DB_URL=postgres://...`) or SQLite (the
//! default: an in-memory database that lives as long as the process).
//!
//! The guest sends the statement as text parts and the values between them
//! (a template's `${name}` parts). The parts are joined with placeholders
//! (`$1`, `$2`, ... for PostgreSQL, `?1`, `?2`, ... for SQLite), and the
//! values are bound parameters of a prepared statement: they are never part
//! of the SQL text. A placeholder written inside quotes (`'${name}'`) loses
//! the quotes, so it is bound too rather than read as a literal.
//!
//! PostgreSQL prepares the statement first and binds each value as the type
//! the server inferred for its parameter (`"42"` binds as an integer where
//! an integer is expected; `"1 OR 1=1"` there is an error, not a match).
//! SQLite binds by the value's own type. Either way one call runs one
//! statement (PostgreSQL refuses more in a prepared statement; for SQLite
//! the host checks the text, see [`one_statement`]).
//!
//! Limits: a statement timeout (PostgreSQL's `statement_timeout`; an SQLite
//! progress handler), never beyond the execution's deadline; a row cap; a
//! cap on statements per execution; and one pool, shared by all executions,
//! of at most `max_connections` connections.

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{Number, Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Executor, Row, Statement, TypeInfo, ValueRef};

/// Settings of the `db` capability.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://...`, `sqlite:...`, or `sqlite::memory:` (the default).
    pub url: String,
    pub max_connections: u32,
    pub statement_timeout: Duration,
    pub max_rows: usize,
    /// Statements one execution may run.
    pub max_queries: u32,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            url: "sqlite::memory:".into(),
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            max_rows: 1000,
            max_queries: 100,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DbRequest {
    sql: Vec<String>,
    #[serde(default)]
    params: Vec<Value>,
}

enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct DbCapability {
    pool: Pool,
    config: DbConfig,
}

/// Run on every PostgreSQL connection given back to the pool.
const PG_RESET: &str = "ROLLBACK; RESET ALL; RESET SESSION AUTHORIZATION; DISCARD TEMP; \
                        SELECT pg_advisory_unlock_all(); UNLISTEN *";

/// SQLite's heap cap for the process (`PRAGMA hard_heap_limit`).
const SQLITE_HEAP_LIMIT: u64 = 256 << 20;

/// The statements `ormDirect` may run, by their first keyword: data and
/// schema statements. Session, transaction and server commands (`SET`,
/// `BEGIN`, `LOCK`, `COPY`, `ATTACH`, `VACUUM`, `PRAGMA`, ...) are refused;
/// what a permitted statement may touch is up to the database role.
const ALLOWED_STATEMENTS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "CREATE", "ALTER", "DROP", "TRUNCATE", "MERGE",
    "CALL", "REPLACE", "EXPLAIN",
];

/// How long past the statement timeout the host waits before dropping the call.
const STATEMENT_GRACE: Duration = Duration::from_millis(50);

/// The most parameters one statement may carry.
const MAX_PARAMS: usize = 1000;

impl DbCapability {
    /// Opens the pool. PostgreSQL connects lazily, so the host starts (and
    /// statements fail with a clear error) while the database is down.
    pub async fn connect(config: DbConfig) -> anyhow::Result<Self> {
        let url = config.url.trim();
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let timeout_ms = config.statement_timeout.as_millis().to_string();
            let options = PgConnectOptions::from_str(url)?
                .application_name("avap-host")
                .options([("statement_timeout", timeout_ms.as_str())]);
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    // Nothing one statement does to its session reaches the
                    // next one: settings, role, temporary tables, locks.
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            conn.execute(PG_RESET).await?;
                            Ok(true)
                        })
                    })
                    .connect_lazy_with(options),
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .busy_timeout(config.statement_timeout)
                // SQLite's heap (in-memory databases included) is capped, so
                // `randomblob(1e9)` fails instead of taking the host's memory.
                .pragma("hard_heap_limit", SQLITE_HEAP_LIMIT.to_string())
                .pragma("trusted_schema", "OFF");
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            // An in-memory database lives only while a connection is open,
            // and each connection would have its own: keep exactly one.
            let pool = if memory {
                SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(config.max_connections)
            };
            Pool::Sqlite(pool.acquire_timeout(Duration::from_secs(5)).connect_with(options).await?)
        } else {
            anyhow::bail!("AVAP_DB_URL must start with postgres://, postgresql:// or sqlite:");
        };
        Ok(DbCapability { pool, config })
    }

    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// `postgres` or `sqlite`, for `/health`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Runs one statement for a guest, within `deadline`. `Err` is the
    /// message of a catchable runtime error.
    pub async fn run(&self, request: &[u8], deadline: Instant) -> Result<Value, String> {
        let req: DbRequest =
            serde_json::from_slice(request).map_err(|e| format!("malformed request from the guest: {e}"))?;
        if req.sql.len() != req.params.len() + 1 {
            return Err("malformed request from the guest: parts and parameters do not match".into());
        }
        if req.params.len() > MAX_PARAMS {
            return Err(format!("too many parameters (at most {MAX_PARAMS})"));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err("the execution's deadline has passed".into());
        }
        let limit = remaining.min(self.config.statement_timeout);
        let timed_out = || format!("statement timeout of {} ms exceeded", limit.as_millis());
        let work = async {
            match &self.pool {
                Pool::Postgres(pool) => {
                    let sql = join(&req.sql, |i| format!("${i}"));
                    check_statement(&sql).map_err(Failure::Message)?;
                    self.run_pg(pool, &sql, &req.params, limit).await
                }
                Pool::Sqlite(pool) => {
                    let sql = join(&req.sql, |i| format!("?{i}"));
                    check_statement(&sql).and_then(|()| one_statement(&sql)).map_err(Failure::Message)?;
                    self.run_sqlite(pool, &sql, &req.params, Instant::now() + limit).await
                }
            }
        };
        // A little grace, so that the server's own statement timeout (a
        // clean cancel) normally fires first.
        match tokio::time::timeout(limit + STATEMENT_GRACE, work).await {
            Ok(Err(Failure::Timeout)) | Err(_) => Err(timed_out()),
            Ok(Err(Failure::Message(m))) => Err(m),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    async fn run_pg(&self, pool: &PgPool, sql: &str, params: &[Value], limit: Duration) -> Result<Value, Failure> {
        let mut conn = CloseUnlessDone { conn: Some(pool.acquire().await.map_err(db_error)?) };
        let result = self.run_pg_on(conn.get()?, sql, params, limit).await;
        conn.done();
        result
    }

    async fn run_pg_on(
        &self,
        conn: &mut sqlx::PgConnection,
        sql: &str,
        params: &[Value],
        limit: Duration,
    ) -> Result<Value, Failure> {
        // The server's own timeout, cut to what is left of the deadline
        // (reset when the connection goes back to the pool). The configured
        // timeout is the connection's own already.
        if limit < self.config.statement_timeout {
            sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                .bind(format!("{}ms", limit.as_millis().max(1)))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        let statement = (&mut *conn).prepare(sql).await.map_err(db_error)?;
        let types: Vec<String> = match statement.parameters() {
            Some(sqlx::Either::Left(types)) => types.iter().map(|t| t.name().to_string()).collect(),
            _ => Vec::new(),
        };
        if types.len() != params.len() {
            return Err(Failure::Message(format!(
                "the statement takes {} parameters but the template gives {}",
                types.len(),
                params.len()
            )));
        }
        let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
        let mut query = sqlx::query(sql);
        for (i, (value, ty)) in params.iter().zip(&types).enumerate() {
            query = bind_pg(query, value, ty).map_err(|e| Failure::Message(format!("parameter {}: {e}", i + 1)))?;
        }
        if columns.is_empty() {
            let done = query.execute(&mut *conn).await.map_err(db_error)?;
            return Ok(json!({ "affected": done.rows_affected() }));
        }
        let mut rows = Rows::new(&self.config);
        let mut stream = query.fetch(&mut *conn);
        while let Some(row) = stream.try_next().await.map_err(db_error)? {
            rows.push(pg_row(&row).map_err(Failure::Message)?)?;
        }
        Ok(json!({ "columns": columns, "rows": rows.rows }))
    }

    async fn run_sqlite(
        &self,
        pool: &SqlitePool,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let mut conn = pool.acquire().await.map_err(db_error)?;
        // Interrupts a statement that runs past the deadline; a dropped
        // future alone would leave it running on the connection's thread.
        conn.lock_handle().await.map_err(db_error)?.set_progress_handler(10_000, move || Instant::now() < deadline);
        let result = async {
            let statement = (&mut *conn).prepare(sql).await.map_err(db_error)?;
            let expected = match statement.parameters() {
                Some(sqlx::Either::Right(n)) => n,
                _ => params.len(),
            };
            if expected != params.len() {
                // Typically a placeholder inside a string literal
                // (`LIKE '%${q}%'`), which SQLite would silently not bind.
                return Err(Failure::Message(format!(
                    "the statement takes {expected} parameters but the template gives {}; a ${{name}} inside \
                     quotes is not a parameter (build the pattern in the script, e.g. q = \"%\" + q + \"%\")",
                    params.len()
                )));
            }
            let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
            let mut query = sqlx::query(sql);
            for value in params {
                query = bind_sqlite(query, value);
            }
            if columns.is_empty() {
                let done = query.execute(&mut *conn).await.map_err(db_error)?;
                return Ok(json!({ "affected": done.rows_affected() }));
            }
            let mut rows = Rows::new(&self.config);
            let mut stream = query.fetch(&mut *conn);
            while let Some(row) = stream.try_next().await.map_err(db_error)? {
                rows.push(sqlite_row(&row).map_err(Failure::Message)?)?;
            }
            Ok(json!({ "columns": columns, "rows": rows.rows }))
        }
        .await;
        if let Ok(mut handle) = conn.lock_handle().await {
            handle.remove_progress_handler();
        }
        match result {
            Err(Failure::Message(m)) if m.contains("interrupted") && Instant::now() >= deadline => {
                Err(Failure::Timeout)
            }
            other => other,
        }
    }
}

/// Rows collected for a reply, within the row cap and the reply's size cap
/// (so a thousand wide rows cannot pile up gigabytes before the reply is
/// refused).
struct Rows {
    rows: Vec<Vec<Value>>,
    bytes: usize,
    max_rows: usize,
}

impl Rows {
    fn new(config: &DbConfig) -> Self {
        Rows { rows: Vec::new(), bytes: 0, max_rows: config.max_rows }
    }

    fn push(&mut self, row: Vec<Value>) -> Result<(), Failure> {
        if self.rows.len() == self.max_rows {
            return Err(Failure::Message(format!(
                "the query returned more than {} rows (the row cap); add a LIMIT",
                self.max_rows
            )));
        }
        self.bytes += row.iter().map(approximate_size).sum::<usize>();
        if self.bytes > super::MAX_REPLY_BYTES {
            return Err(Failure::Message(format!(
                "the rows exceed the reply cap of {} bytes; select fewer or narrower rows",
                super::MAX_REPLY_BYTES
            )));
        }
        self.rows.push(row);
        Ok(())
    }
}

/// Roughly the JSON size of a value (exact for scalars up to quoting).
fn approximate_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(approximate_size).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() + 4 + approximate_size(v)).sum::<usize>(),
    }
}

enum Failure {
    Timeout,
    Message(String),
}

/// A pooled PostgreSQL connection that is closed, not reused, when the call
/// using it was abandoned mid-statement (the host-side timeout dropped it).
struct CloseUnlessDone {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl CloseUnlessDone {
    fn get(&mut self) -> Result<&mut sqlx::PgConnection, Failure> {
        self.conn.as_deref_mut().ok_or_else(|| Failure::Message("internal error: connection already released".into()))
    }

    /// The call finished: the connection may go back to the pool.
    fn done(&mut self) {
        self.conn = None;
    }
}

impl Drop for CloseUnlessDone {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// The first keyword of a statement, upper-cased (comments, white space and
/// opening parentheses skipped).
fn leading_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase()
}

/// Refuses NUL bytes (SQLite would stop reading there and loop) and any
/// statement outside [`ALLOWED_STATEMENTS`].
fn check_statement(sql: &str) -> Result<(), String> {
    if sql.contains('\0') {
        return Err("the statement contains a NUL character".into());
    }
    let keyword = leading_keyword(sql);
    if ALLOWED_STATEMENTS.contains(&keyword.as_str()) {
        return Ok(());
    }
    let shown = if keyword.is_empty() { "this".to_string() } else { format!("'{keyword}'") };
    Err(format!("{shown} statements are not allowed (allowed: {})", ALLOWED_STATEMENTS.join(", ")))
}

/// A database error as the script sees it. Connection details stay out.
fn db_error(err: sqlx::Error) -> Failure {
    match err {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("57014") => Failure::Timeout,
        sqlx::Error::Database(e) => Failure::Message(format!("database error: {}", e.message())),
        sqlx::Error::PoolTimedOut => Failure::Message("no database connection became free in time".into()),
        sqlx::Error::Io(e) => Failure::Message(format!("the database is unavailable: {e}")),
        sqlx::Error::Tls(e) => Failure::Message(format!("the database is unavailable: {e}")),
        other => Failure::Message(format!("database error: {other}")),
    }
}

/// Refuses SQL text with more than one statement. PostgreSQL refuses that in
/// a prepared statement by itself; SQLite would run every statement, so the
/// host splits on `;` outside quotes, identifiers and comments. (A trigger
/// body with `;` inside it is refused too.)
fn one_statement(sql: &str) -> Result<(), String> {
    let mut chars = sql.chars().peekable();
    let mut ended = false;
    while let Some(c) = chars.next() {
        if ended && !c.is_whitespace() && c != ';' {
            if c == '-' && chars.peek() == Some(&'-') {
                chars.by_ref().take_while(|&c| c != '\n').for_each(drop);
                continue;
            }
            return Err("one SQL statement at a time: the text holds more than one".into());
        }
        match c {
            ';' => ended = true,
            '\'' | '"' | '`' => {
                // Quoted text; a doubled quote is an escaped quote and simply
                // reopens the same quoted run.
                chars.by_ref().take_while(|&d| d != c).for_each(drop);
            }
            '[' => chars.by_ref().take_while(|&d| d != ']').for_each(drop),
            '-' if chars.peek() == Some(&'-') => chars.by_ref().take_while(|&c| c != '\n').for_each(drop),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Joins the parts with numbered placeholders, dropping the quotes around a
/// placeholder written as `'${name}'`.
fn join(parts: &[String], placeholder: impl Fn(usize) -> String) -> String {
    let mut sql = String::new();
    let n = parts.len();
    for (i, part) in parts.iter().enumerate() {
        let mut text = part.as_str();
        let quoted_before = i > 0 && parts[i - 1].ends_with('\'') && text.starts_with('\'');
        if quoted_before {
            text = &text[1..];
        }
        let quoted_after = i + 1 < n && text.ends_with('\'') && parts[i + 1].starts_with('\'');
        if quoted_after {
            text = &text[..text.len() - 1];
        }
        sql.push_str(text);
        if i + 1 < n {
            sql.push_str(&placeholder(i + 1));
        }
    }
    sql
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// The value's text: strings as they are, other values as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe(value: &Value) -> String {
    let text = text_of(value);
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() { format!("'{short}...'") } else { format!("'{short}'") }
}

fn int_of(value: &Value) -> Option<i64> {
    // 2^63 as a float: the first value past i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (-LIMIT..LIMIT).contains(f)).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Binds `value` as the PostgreSQL type `ty` the server inferred.
fn bind_pg<'q>(query: PgQuery<'q>, value: &Value, ty: &str) -> Result<PgQuery<'q>, String> {
    use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
    let null = value.is_null();
    let expected = |what: &str| format!("expected {what} (SQL type {ty}), got {}", describe(value));
    let int = || int_of(value).ok_or_else(|| expected("an integer"));
    Ok(match ty {
        "INT2" => {
            query.bind(if null { None } else { Some(i16::try_from(int()?).map_err(|_| expected("a 16-bit integer"))?) })
        }
        "INT4" => {
            query.bind(if null { None } else { Some(i32::try_from(int()?).map_err(|_| expected("a 32-bit integer"))?) })
        }
        "INT8" => query.bind(if null { None } else { Some(int()?) }),
        "FLOAT4" => {
            query.bind(if null { None } else { Some(float_of(value).ok_or_else(|| expected("a number"))? as f32) })
        }
        "FLOAT8" => query.bind(if null { None } else { Some(float_of(value).ok_or_else(|| expected("a number"))?) }),
        "NUMERIC" => query.bind(if null {
            None
        } else {
            let text = text_of(value);
            let parsed = rust_decimal::Decimal::from_str(text.trim())
                .or_else(|_| rust_decimal::Decimal::from_scientific(text.trim()));
            Some(parsed.map_err(|_| expected("a number"))?)
        }),
        "BOOL" => query.bind(if null {
            None
        } else {
            Some(match value {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => n.as_i64() == Some(1),
                Value::String(s) if ["true", "t", "1"].contains(&s.to_ascii_lowercase().as_str()) => true,
                Value::String(s) if ["false", "f", "0"].contains(&s.to_ascii_lowercase().as_str()) => false,
                _ => return Err(expected("a boolean")),
            })
        }),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            query.bind(if null { None } else { Some(text_of(value)) })
        }
        "JSON" | "JSONB" => query.bind(if null { None } else { Some(sqlx::types::Json(value.clone())) }),
        "UUID" => query.bind(if null {
            None
        } else {
            Some(sqlx::types::Uuid::parse_str(text_of(value).trim()).map_err(|_| expected("a UUID"))?)
        }),
        "TIMESTAMPTZ" => query.bind(if null {
            None
        } else {
            let text = text_of(value);
            let parsed = DateTime::parse_from_rfc3339(text.trim())
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| naive_datetime(&text).map(|n| n.and_utc()))
                .or_else(|_| {
                    float_of(value).and_then(|s| DateTime::<Utc>::from_timestamp_micros((s * 1e6) as i64)).ok_or(())
                });
            Some(parsed.map_err(|_| expected("an ISO 8601 date-time or a Unix timestamp"))?)
        }),
        "TIMESTAMP" => query.bind(if null {
            None
        } else {
            Some(naive_datetime(&text_of(value)).map_err(|_| expected("an ISO 8601 date-time"))?)
        }),
        "DATE" => query.bind(if null {
            None
        } else {
            Some(NaiveDate::from_str(text_of(value).trim()).map_err(|_| expected("a date (YYYY-MM-DD)"))?)
        }),
        "TIME" => query.bind(if null {
            None
        } else {
            Some(NaiveTime::from_str(text_of(value).trim()).map_err(|_| expected("a time (HH:MM:SS)"))?)
        }),
        other => {
            return Err(format!(
                "cannot bind a value as SQL type {other}; cast the parameter in the query (e.g. ${{name}}::text)"
            ));
        }
    })
}

fn naive_datetime(text: &str) -> Result<chrono::NaiveDateTime, ()> {
    let text = text.trim();
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| chrono::NaiveDate::from_str(text).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .ok_or(())
}

/// Binds `value` by its own JSON type (SQLite types values, not columns).
fn bind_sqlite<'q>(query: SqliteQuery<'q>, value: &Value) -> SqliteQuery<'q> {
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Bool(b) => query.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => query.bind(i),
            None => query.bind(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => query.bind(s.clone()),
        other => query.bind(other.to_string()),
    }
}

fn float_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// One PostgreSQL row as JSON values, by column type.
fn pg_row(row: &PgRow) -> Result<Vec<Value>, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
    let mut out = Vec::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        let size = raw.as_bytes().map_or(0, <[u8]>::len);
        if size > super::MAX_REPLY_BYTES {
            return Err(too_large(column.name(), size));
        }
        let ty = column.type_info().name().to_string();
        let err = |e: sqlx::Error| format!("column '{}': {e}", column.name());
        let value = match ty.as_str() {
            "BOOL" => Value::Bool(row.try_get_unchecked::<bool, _>(i).map_err(err)?),
            "INT2" => json!(row.try_get_unchecked::<i16, _>(i).map_err(err)?),
            "INT4" => json!(row.try_get_unchecked::<i32, _>(i).map_err(err)?),
            "INT8" => json!(row.try_get_unchecked::<i64, _>(i).map_err(err)?),
            "OID" => json!(row.try_get_unchecked::<sqlx::postgres::types::Oid, _>(i).map_err(err)?.0),
            "FLOAT4" => float_json(f64::from(row.try_get_unchecked::<f32, _>(i).map_err(err)?)),
            "FLOAT8" => float_json(row.try_get_unchecked::<f64, _>(i).map_err(err)?),
            "NUMERIC" => {
                let d = row.try_get_unchecked::<rust_decimal::Decimal, _>(i).map_err(err)?;
                // Whole numbers (SUM of integers, say) stay integers.
                match (d.scale(), i64::try_from(d)) {
                    (0, Ok(n)) => json!(n),
                    _ => float_json(f64::try_from(d).unwrap_or(f64::NAN)),
                }
            }
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" | "XML" => {
                Value::String(row.try_get_unchecked::<String, _>(i).map_err(err)?)
            }
            "JSON" | "JSONB" => row.try_get_unchecked::<Value, _>(i).map_err(err)?,
            "UUID" => Value::String(row.try_get_unchecked::<sqlx::types::Uuid, _>(i).map_err(err)?.to_string()),
            "TIMESTAMPTZ" => Value::String(
                row.try_get_unchecked::<DateTime<Utc>, _>(i).map_err(err)?.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
            "TIMESTAMP" => Value::String(
                row.try_get_unchecked::<NaiveDateTime, _>(i).map_err(err)?.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            ),
            "DATE" => Value::String(row.try_get_unchecked::<NaiveDate, _>(i).map_err(err)?.to_string()),
            "TIME" => Value::String(row.try_get_unchecked::<NaiveTime, _>(i).map_err(err)?.to_string()),
            "BYTEA" => {
                Value::String(format!("\\x{}", hex::encode(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err)?)))
            }
            "VOID" => Value::Null,
            other => {
                let name = column.name();
                return Err(format!(
                    "column '{name}' has SQL type {other}, which ormDirect cannot return; cast it in the query (e.g. {name}::text)"
                ));
            }
        };
        out.push(value);
    }
    Ok(out)
}

fn too_large(column: &str, size: usize) -> String {
    format!("column '{column}' holds a value of {size} bytes, over the reply cap of {} bytes", super::MAX_REPLY_BYTES)
}

/// One SQLite row as JSON values, by each value's storage class (a column
/// declared BOOLEAN gives booleans). Text and blobs are measured before
/// they are copied.
fn sqlite_row(row: &SqliteRow) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        let Ok(raw) = row.try_get_raw(i) else {
            out.push(Value::Null);
            continue;
        };
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        let storage = raw.type_info().name().to_string();
        let declared = column.type_info().name().to_ascii_uppercase();
        let value = match storage.as_str() {
            "INTEGER" if declared == "BOOLEAN" => {
                row.try_get_unchecked::<i64, _>(i).map(|n| Value::Bool(n != 0)).unwrap_or(Value::Null)
            }
            "INTEGER" => row.try_get_unchecked::<i64, _>(i).map(|n| json!(n)).unwrap_or(Value::Null),
            "REAL" => row.try_get_unchecked::<f64, _>(i).map(float_json).unwrap_or(Value::Null),
            "BLOB" => match row.try_get_unchecked::<&[u8], _>(i) {
                Ok(b) if b.len() * 2 > super::MAX_REPLY_BYTES => return Err(too_large(column.name(), b.len())),
                Ok(b) => Value::String(format!("\\x{}", hex::encode(b))),
                Err(_) => Value::Null,
            },
            _ => match row.try_get_unchecked::<&str, _>(i) {
                Ok(t) if t.len() > super::MAX_REPLY_BYTES => return Err(too_large(column.name(), t.len())),
                Ok(t) => Value::String(t.to_string()),
                Err(_) => Value::Null,
            },
        };
        out.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{DbConfig, Failure, Rows, join, one_statement};
    use serde_json::json;

    fn message(r: Result<(), Failure>) -> String {
        match r {
            Err(Failure::Message(m)) => m,
            Err(Failure::Timeout) => "timeout".into(),
            Ok(()) => "ok".into(),
        }
    }

    #[test]
    fn rows_stop_at_the_row_cap_and_the_reply_cap() {
        let mut rows = Rows::new(&DbConfig { max_rows: 2, ..DbConfig::default() });
        assert_eq!(message(rows.push(vec![json!(1)])), "ok");
        assert_eq!(message(rows.push(vec![json!("a")])), "ok");
        assert!(message(rows.push(vec![json!(3)])).contains("more than 2 rows (the row cap)"));
        let mut rows = Rows::new(&DbConfig::default());
        let wide = json!("x".repeat(3 << 20));
        assert_eq!(message(rows.push(vec![wide.clone()])), "ok");
        assert_eq!(message(rows.push(vec![wide.clone()])), "ok");
        assert!(message(rows.push(vec![wide])).contains("exceed the reply cap"));
    }

    fn parts(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_statement_at_a_time() {
        for ok in [
            "SELECT 1",
            "SELECT 1;",
            "SELECT 1 ;  ; -- done",
            "SELECT ';' AS semi, \"a;b\" FROM t -- x; y",
            "SELECT 'it''s; fine' /* ; */ FROM [we;ird]",
        ] {
            assert_eq!(one_statement(ok), Ok(()), "{ok}");
        }
        for bad in ["SELECT 1; DELETE FROM t", "SELECT 'a'';' ; DROP TABLE t", "SELECT 1 /* x */; SELECT 2"] {
            assert!(one_statement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_replace_template_parts_and_their_quotes() {
        let pg = |i: usize| format!("${i}");
        assert_eq!(join(&parts(&["SELECT 1"]), pg), "SELECT 1");
        assert_eq!(join(&parts(&["SELECT * FROM t WHERE id = ", ""]), pg), "SELECT * FROM t WHERE id = $1");
        assert_eq!(
            join(&parts(&["SELECT * FROM t WHERE a = '", "' AND b = ", " AND c = '", "'"]), |i| format!("?{i}")),
            "SELECT * FROM t WHERE a = ?1 AND b = ?2 AND c = ?3"
        );
        // Quotes that do not wrap a lone placeholder stay.
        assert_eq!(join(&parts(&["SELECT 'x", "'"]), pg), "SELECT 'x$1'");
    }
}
