//! The `db` capability: `ormDirect`, one SQL statement per call, on
//! PostgreSQL (`AVAP_DB_URL=postgres://...`, [`postgres`]) or SQLite
//! ([`sqlite`]: by default a scratch database of the execution's own).
//!
//! The guest sends the statement as text parts and the values between them
//! (a template's `${name}` parts). The parts are joined with placeholders
//! (`$1`, `$2`, ... for PostgreSQL, `?1`, `?2`, ... for SQLite), and the
//! values are bound parameters of a prepared statement: they are never part
//! of the SQL text. A placeholder written inside quotes (`'${name}'`) loses
//! the quotes, so it is bound too rather than read as a literal.
//!
//! Before anything reaches a database the statement passes the classifier
//! (`avap_policy::sql`: one statement, an allowed kind, no denied function),
//! lexed as that database reads SQL. What a permitted statement may touch is
//! the database's decision: PostgreSQL's role (refused at start-up when it
//! can reach the server's files or programs), SQLite's authorizer.
//!
//! Limits: a statement timeout, never beyond the execution's deadline; a row
//! cap; the reply cap ([`avap_abi::MAX_REPLY_BYTES`]), which also bounds one
//! PostgreSQL message; a cap on statements per execution; a bounded pool.
//! Replies are written as JSON text as rows arrive, never as a tree.

pub mod postgres;
pub mod sqlite;

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::CapError;
use serde_json::value::RawValue;

use avap_abi::MAX_REPLY_BYTES;
use avap_abi::wire::DbRequest;
use avap_policy::json::Kind;
use avap_policy::sql::{self, Dialect};

/// Settings of the `db` capability.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://...`, `sqlite:path`, or `sqlite::memory:` (the default: a
    /// scratch database per execution).
    pub url: String,
    pub max_connections: u32,
    pub statement_timeout: Duration,
    pub max_rows: usize,
    /// Statements one execution may run.
    pub max_queries: u32,
    /// Run with a PostgreSQL role that can reach the server's files or
    /// programs (superuser and the like). Off: such a role is refused.
    pub allow_privileged_role: bool,
}

impl Default for DbConfig {
    /// The built-in defaults ([`crate::Config::defaults`]).
    fn default() -> Self {
        crate::Config::defaults().db()
    }
}

/// One bound value from the guest. Scalars are read as they are; lists and
/// dicts stay JSON text (checked, never built into a tree).
#[derive(Debug)]
pub(crate) enum Param<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Json(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Param<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        let text = raw.get();
        let parse = |e: serde_json::Error| D::Error::custom(e.to_string());
        Ok(match avap_policy::json::kind(raw) {
            Kind::Null => Param::Null,
            Kind::Bool => Param::Bool(text == "true"),
            Kind::String => Param::Text(serde_json::from_str(text).map_err(parse)?),
            Kind::Number => {
                let n: serde_json::Number = serde_json::from_str(text).map_err(parse)?;
                match n.as_i64() {
                    Some(i) => Param::Int(i),
                    None => Param::Float(n.as_f64().unwrap_or(0.0)),
                }
            }
            Kind::Array | Kind::Object => Param::Json(raw),
        })
    }
}

impl Param<'_> {
    /// The value's text: strings as they are, other values as JSON.
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Param::Text(s) => std::borrow::Cow::Borrowed(s),
            other => std::borrow::Cow::Owned(other.json_text()),
        }
    }

    /// The value as JSON text.
    pub(crate) fn json_text(&self) -> String {
        match self {
            Param::Null => "null".into(),
            Param::Bool(b) => b.to_string(),
            Param::Int(i) => i.to_string(),
            Param::Float(f) => serde_json::Number::from_f64(*f).map_or_else(|| "null".into(), |n| n.to_string()),
            Param::Text(s) => serde_json::to_string(s).unwrap_or_default(),
            Param::Json(raw) => raw.get().to_string(),
        }
    }
}

enum Backend {
    Postgres(postgres::Postgres),
    Sqlite(sqlite::Sqlite),
}

pub struct DbCapability {
    backend: Backend,
    config: DbConfig,
}

/// What one execution holds of the database between its statements: its
/// scratch SQLite database, when that is the backend. Dropped with the
/// execution, so nothing a script stores there outlives it.
#[derive(Default)]
pub struct DbSession {
    /// Statements run so far (capped at `max_queries`).
    queries: u32,
    scratch: sqlite::Scratch,
}

/// How long past the statement timeout the host waits before dropping the call.
const STATEMENT_GRACE: Duration = Duration::from_millis(50);

/// The most parameters one statement may carry.
pub const MAX_PARAMS: usize = 1000;

/// Why a statement produced no reply, as a backend reports it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The statement timeout (PostgreSQL's `query_canceled`, SQLite's
    /// interrupt).
    Timeout,
    /// The classifier or the database's own rules refused it.
    Refused(String),
    /// The row cap or the reply cap.
    Limit(String),
    /// Anything else the database said.
    Message(String),
}

impl DbCapability {
    /// Opens the backend. PostgreSQL: the role is inspected on a first
    /// connection and a privileged one is refused (unless allowed); if the
    /// server cannot be reached the host starts anyway, and every connection
    /// made later is inspected the same way.
    pub async fn connect(config: DbConfig) -> anyhow::Result<Self> {
        let url = config.url.trim();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::Postgres::connect(&config).await?)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            Backend::Sqlite(sqlite::Sqlite::open(rest, &config)?)
        } else {
            anyhow::bail!("AVAP_DB_URL must start with postgres://, postgresql:// or sqlite:");
        };
        Ok(DbCapability { backend, config })
    }

    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// `postgres`, `sqlite` (a file shared by every execution) or
    /// `sqlite-scratch` (a database per execution), for `/health`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(s) if s.is_scratch() => "sqlite-scratch",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// One `db_query` of an execution: counts it against the execution's
    /// cap, then runs it.
    pub async fn call(&self, session: &mut DbSession, request: &[u8], deadline: Instant) -> Result<Vec<u8>, CapError> {
        let max = self.config.max_queries;
        if session.queries >= max {
            return Err(CapError::Limit(format!("limit exceeded: at most {max} database statements per execution")));
        }
        session.queries += 1;
        self.run(request, deadline, session).await
    }

    /// Runs one statement for a guest, within `deadline`, and returns the
    /// reply payload as JSON text ([`avap_abi::wire::DbReply`]:
    /// `{"columns": [...], "rows": [[...]]}` or `{"affected": N}`).
    pub async fn run(&self, request: &[u8], deadline: Instant, session: &mut DbSession) -> Result<Vec<u8>, CapError> {
        let malformed = |e: &dyn std::fmt::Display| CapError::Failed(format!("malformed request from the guest: {e}"));
        avap_policy::json::validate(request, avap_abi::MAX_JSON_DEPTH).map_err(|e| malformed(&e))?;
        let req: DbRequest<Param<'_>> = serde_json::from_slice(request).map_err(|e| malformed(&e))?;
        if req.sql.len() != req.params.len() + 1 {
            return Err(malformed(&"parts and parameters do not match"));
        }
        if req.params.len() > MAX_PARAMS {
            return Err(CapError::Limit(format!("too many parameters (at most {MAX_PARAMS})")));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CapError::Timeout("the execution's deadline has passed".into()));
        }
        let limit = remaining.min(self.config.statement_timeout);
        let timed_out = || format!("statement timeout of {} ms exceeded", limit.as_millis());
        let work = async {
            match &self.backend {
                Backend::Postgres(pg) => {
                    let text = join(&req.sql, |i| format!("${i}"));
                    sql::check_statement(&text, Dialect::Postgres).map_err(|r| Failure::Refused(r.0))?;
                    pg.run(&text, &req.params, limit, &self.config).await
                }
                Backend::Sqlite(lite) => {
                    let text = join(&req.sql, |i| format!("?{i}"));
                    sql::check_statement(&text, Dialect::Sqlite).map_err(|r| Failure::Refused(r.0))?;
                    let params = req.params.iter().map(sqlite::bind).collect();
                    lite.run(text, params, Instant::now() + limit, &self.config, &mut session.scratch).await
                }
            }
        };
        // A little grace, so that the database's own timeout (a clean
        // cancel) normally fires first.
        match tokio::time::timeout(limit + STATEMENT_GRACE, work).await {
            Ok(Err(Failure::Timeout)) | Err(_) => Err(CapError::Timeout(timed_out())),
            Ok(Err(Failure::Refused(m))) => Err(CapError::Refused(m)),
            Ok(Err(Failure::Limit(m))) => Err(CapError::Limit(m)),
            Ok(Err(Failure::Message(m))) => Err(CapError::Failed(m)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }
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

/// One cell of a result row, borrowed from the driver's buffer where it can
/// be, written straight into the reply.
pub(crate) enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    /// Text the backend produced (dates, UUIDs, hex).
    Owned(String),
    /// JSON text already validated (json/jsonb columns).
    Json(&'a str),
}

/// The reply payload, written as JSON text row by row within the row cap and
/// the reply cap, so a thousand wide rows never pile up before they are
/// refused, and no row becomes a tree of values.
pub(crate) struct Reply {
    buf: Vec<u8>,
    rows: usize,
    max_rows: usize,
}

impl Reply {
    pub(crate) fn rows<'a>(columns: impl IntoIterator<Item = &'a str>, max_rows: usize) -> Reply {
        let mut buf = b"{\"columns\":[".to_vec();
        for (i, c) in columns.into_iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_str(&mut buf, c);
        }
        buf.extend_from_slice(b"],\"rows\":[");
        Reply { buf, rows: 0, max_rows }
    }

    pub(crate) fn affected(n: u64) -> Vec<u8> {
        format!("{{\"affected\":{n}}}").into_bytes()
    }

    pub(crate) fn push_row<'a>(&mut self, cells: impl IntoIterator<Item = Cell<'a>>) -> Result<(), Failure> {
        if self.rows == self.max_rows {
            return Err(Failure::Limit(format!(
                "the query returned more than {} rows (the row cap); add a LIMIT",
                self.max_rows
            )));
        }
        if self.rows > 0 {
            self.buf.push(b',');
        }
        self.buf.push(b'[');
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            match cell {
                Cell::Null => self.buf.extend_from_slice(b"null"),
                Cell::Bool(b) => self.buf.extend_from_slice(if b { b"true" } else { b"false" }),
                Cell::Int(n) => self.buf.extend_from_slice(n.to_string().as_bytes()),
                Cell::Float(f) => match serde_json::Number::from_f64(f) {
                    Some(n) => self.buf.extend_from_slice(n.to_string().as_bytes()),
                    None => self.buf.extend_from_slice(b"null"),
                },
                Cell::Text(t) => write_str(&mut self.buf, t),
                Cell::Owned(t) => write_str(&mut self.buf, &t),
                Cell::Json(raw) => self.buf.extend_from_slice(raw.as_bytes()),
            }
            // Checked per cell: one huge cell stops here, not at the row's end.
            if self.buf.len() > MAX_REPLY_BYTES {
                return Err(over_reply_cap());
            }
        }
        self.buf.push(b']');
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"]}");
        self.buf
    }
}

pub(crate) fn over_reply_cap() -> Failure {
    Failure::Limit(format!("the rows exceed the reply cap of {MAX_REPLY_BYTES} bytes; select fewer or narrower rows"))
}

/// A JSON string literal of `s`.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// JSON text from a json/jsonb column, held to the depth a script value may
/// have, or why not.
pub(crate) fn checked_json<'a>(column: &str, text: &'a str) -> Result<Cell<'a>, Failure> {
    avap_policy::json::validate(text.as_bytes(), avap_abi::MAX_VALUE_DEPTH)
        .map_err(|e| Failure::Message(format!("column '{column}' holds JSON that cannot be returned: {e}")))?;
    Ok(Cell::Json(text))
}

/// A value for messages: its text, at most 40 characters, quoted.
pub(crate) fn describe(value: &Param<'_>) -> String {
    let text = value.text();
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() { format!("'{short}...'") } else { format!("'{short}'") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
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

    fn message(r: Result<(), Failure>) -> String {
        match r {
            Err(Failure::Message(m) | Failure::Refused(m) | Failure::Limit(m)) => m,
            Err(Failure::Timeout) => "timeout".into(),
            Ok(()) => "ok".into(),
        }
    }

    #[test]
    fn replies_are_json_within_the_row_and_reply_caps() {
        let mut reply = Reply::rows(["a", "b\"c"], 2);
        assert_eq!(message(reply.push_row([Cell::Int(1), Cell::Text("x\ny")])), "ok");
        assert_eq!(message(reply.push_row([Cell::Float(0.5), Cell::Json("{\"k\": [1]}")])), "ok");
        assert!(message(reply.push_row([Cell::Null, Cell::Bool(true)])).contains("more than 2 rows (the row cap)"));
        let text = String::from_utf8(reply.finish()).expect("utf-8");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, serde_json::json!({"columns": ["a", "b\"c"], "rows": [[1, "x\ny"], [0.5, {"k": [1]}]]}));
        let mut reply = Reply::rows(["w"], 1000);
        let wide = "x".repeat(3 << 20);
        assert_eq!(message(reply.push_row([Cell::Text(&wide)])), "ok");
        assert_eq!(message(reply.push_row([Cell::Text(&wide)])), "ok");
        assert!(message(reply.push_row([Cell::Text(&wide)])).contains("exceed the reply cap"));
    }

    #[test]
    fn json_cells_are_held_to_the_value_depth() {
        let ok = format!("{}1{}", "[".repeat(96), "]".repeat(96));
        assert!(checked_json("c", &ok).is_ok());
        let deep = format!("[{ok}]");
        assert!(matches!(checked_json("c", &deep), Err(Failure::Message(m)) if m.contains("nested deeper")));
    }
}
