//! SQLite for `ormDirect`, through rusqlite's safe API.
//!
//! Two modes:
//! - **scratch** (`sqlite::memory:`, the default): every execution gets an
//!   in-memory database of its own, opened at its first statement and
//!   dropped with it. No script sees, holds or drops another script's tables;
//!   nothing outlives the execution. Each is capped at
//!   [`SCRATCH_MAX_BYTES`].
//! - **file** (`sqlite:path`): one database file shared by every execution,
//!   through a bounded pool of connections. The operator chose to share it:
//!   scripts on such a host trust each other with its data.
//!
//! Every connection, before a script's statement reaches it:
//! - `SQLITE_DBCONFIG_DEFENSIVE` (no `writable_schema`, no shadow-table
//!   writes), untrusted schema, no `fts3_tokenizer`, no attaching;
//! - limits: strings and blobs at most the reply cap, the SQL text at most
//!   the request cap, no attached databases, shallow trigger recursion;
//! - temporary data in memory, never in files;
//! - an authorizer, consulted while SQLite prepares each statement (so it
//!   also sees what `EXPLAIN` wraps): it denies every `PRAGMA`, `ATTACH`,
//!   `DETACH`, transaction and savepoint, virtual tables other than the
//!   full-text and r-tree modules, and the functions that touch files or
//!   load code;
//! - a progress handler that interrupts a statement at its deadline.
//!
//! The process-wide SQLite heap is capped at [`SQLITE_HEAP_LIMIT`]
//! (`sqlite3_hard_heap_limit64`, set once at start-up, before any script runs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig as Flag;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Semaphore;

use super::{Cell, DbConfig, Failure, Param, Reply};
use avap_abi::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};

/// The most one scratch database may hold (its pages), in bytes.
pub const SCRATCH_MAX_BYTES: usize = 8 << 20;
/// The SQLite heap of the whole process, in bytes.
pub const SQLITE_HEAP_LIMIT: i64 = 512 << 20;
/// Virtual tables a script may create.
const ALLOWED_MODULES: &[&str] = &["fts3", "fts4", "fts5", "rtree"];
/// Functions a script may not call (the authorizer's list; the classifier
/// refuses them by name too).
const DENIED_FUNCTIONS: &[&str] = &["load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"];
/// How often (in virtual machine steps) the progress handler checks the deadline.
const PROGRESS_STEPS: i32 = 1000;
/// How long an execution waits for a pooled file connection at most.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Sqlite {
    mode: Mode,
}

enum Mode {
    Scratch,
    File { path: PathBuf, idle: Mutex<Vec<Connection>>, slots: Arc<Semaphore>, busy_timeout: Duration },
}

/// One execution's scratch database, kept in its capability state.
#[derive(Default)]
pub struct Scratch {
    conn: Option<Connection>,
    /// A statement was abandoned while it held the connection.
    lost: bool,
}

impl Sqlite {
    /// `target` is what follows `sqlite:` in the URL: `:memory:` (scratch
    /// databases) or a file path.
    pub fn open(target: &str, config: &DbConfig) -> anyhow::Result<Self> {
        // The heap cap is process-wide: set it once, on a connection no
        // script ever uses, before the authorizer would refuse the pragma.
        let setup = Connection::open_in_memory()?;
        setup.pragma_update(None, "hard_heap_limit", SQLITE_HEAP_LIMIT)?;
        drop(setup);
        let target = target.trim();
        let scratch = target.is_empty() || target == ":memory:" || target.contains("mode=memory");
        let mode = if scratch {
            Mode::Scratch
        } else {
            let path = PathBuf::from(target.strip_prefix("//").unwrap_or(target));
            // Open one now so a bad path fails at start-up, not per script.
            let first = open_file(&path, config.statement_timeout)?;
            Mode::File {
                path,
                idle: Mutex::new(vec![first]),
                slots: Arc::new(Semaphore::new(config.max_connections as usize)),
                busy_timeout: config.statement_timeout,
            }
        };
        Ok(Sqlite { mode })
    }

    pub fn is_scratch(&self) -> bool {
        matches!(self.mode, Mode::Scratch)
    }

    /// Runs one checked statement on the execution's scratch database or a
    /// pooled file connection, on a blocking thread, until `deadline`.
    pub(crate) async fn run(
        &self,
        sql: String,
        params: Vec<SqlValue>,
        deadline: Instant,
        config: &DbConfig,
        scratch: &mut Scratch,
    ) -> Result<Vec<u8>, Failure> {
        let max_rows = config.max_rows;
        match &self.mode {
            Mode::Scratch => {
                if scratch.lost {
                    return Err(Failure::Message(
                        "the execution's scratch database was lost when a statement was abandoned".into(),
                    ));
                }
                let conn = match scratch.conn.take() {
                    Some(conn) => conn,
                    None => open_scratch().map_err(sqlite_error)?,
                };
                scratch.lost = true;
                let (conn, result) = on_blocking_thread(conn, sql, params, deadline, max_rows).await?;
                scratch.conn = Some(conn);
                scratch.lost = false;
                result
            }
            Mode::File { path, idle, slots, busy_timeout } => {
                let wait = deadline.saturating_duration_since(Instant::now()).min(ACQUIRE_TIMEOUT);
                let slot = tokio::time::timeout(wait, slots.clone().acquire_owned())
                    .await
                    .map_err(|_| Failure::Message("no database connection became free in time".into()))?
                    .map_err(|_| Failure::Message("the database is shutting down".into()))?;
                let pooled = idle.lock().ok().and_then(|mut v| v.pop());
                let conn = match pooled {
                    Some(conn) => conn,
                    None => open_file(path, *busy_timeout).map_err(sqlite_error)?,
                };
                // The slot goes with the connection to the blocking thread:
                // an abandoned statement keeps it until the thread is done.
                let (conn, result, slot) = tokio::task::spawn_blocking(move || {
                    let mut conn = conn;
                    let result = run_statement(&mut conn, &sql, &params, deadline, max_rows);
                    (conn, result, slot)
                })
                .await
                .map_err(|e| Failure::Message(format!("the database call failed: {e}")))?;
                if let Ok(mut v) = idle.lock() {
                    v.push(conn);
                }
                drop(slot);
                result
            }
        }
    }
}

/// Runs the statement with `conn` moved to a blocking thread; hands the
/// connection back with the result.
async fn on_blocking_thread(
    mut conn: Connection,
    sql: String,
    params: Vec<SqlValue>,
    deadline: Instant,
    max_rows: usize,
) -> Result<(Connection, Result<Vec<u8>, Failure>), Failure> {
    tokio::task::spawn_blocking(move || {
        let result = run_statement(&mut conn, &sql, &params, deadline, max_rows);
        (conn, result)
    })
    .await
    .map_err(|e| Failure::Message(format!("the database call failed: {e}")))
}

fn open_scratch() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    cap_pages(&conn)?;
    harden(conn, Temp::Allowed)
}

/// Keeps temporary data in memory and opens the temporary database now (it
/// is otherwise made at its first use, with no page cap); changing
/// `temp_store` later would drop it again.
fn open_temp(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch("CREATE TEMP TABLE avap_open_temp (x); DROP TABLE temp.avap_open_temp;")
}

/// Caps the main and the temporary database at [`SCRATCH_MAX_BYTES`] each.
fn cap_pages(conn: &Connection) -> rusqlite::Result<()> {
    open_temp(conn)?;
    for schema in ["main", "temp"] {
        let page_size: i64 = conn.query_row(&format!("PRAGMA {schema}.page_size"), [], |r| r.get(0))?;
        conn.pragma_update(Some(schema), "max_page_count", SCRATCH_MAX_BYTES as i64 / page_size.max(512))?;
    }
    Ok(())
}

/// Whether a connection may hold temporary objects: a scratch database's
/// connection yes (it is the execution's own), a pooled file connection no
/// (they would outlive the execution and run inside the next one's
/// statements).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Temp {
    Allowed,
    Denied,
}

fn open_file(path: &std::path::Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    // No SQLITE_OPEN_URI: the path is a path, never a `file:` URI with options.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // The temporary database only: the file is the operator's to size.
    open_temp(&conn)?;
    let page_size: i64 = conn.query_row("PRAGMA temp.page_size", [], |r| r.get(0))?;
    conn.pragma_update(Some("temp"), "max_page_count", SCRATCH_MAX_BYTES as i64 / page_size.max(512))?;
    harden(conn, Temp::Denied)
}

/// Flags, limits and the authorizer; after this no pragma can run.
fn harden(mut conn: Connection, temp: Temp) -> rusqlite::Result<Connection> {
    conn.set_db_config(Flag::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(Flag::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(Flag::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false)?;
    conn.set_db_config(Flag::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false)?;
    conn.set_db_config(Flag::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)?;
    conn.set_db_config(Flag::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false)?;
    let limit = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit(MAX_REPLY_BYTES))?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limit(MAX_REQUEST_BYTES))?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 32)?;
    conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, limit(super::MAX_PARAMS))?;
    conn.set_limit(Limit::SQLITE_LIMIT_WORKER_THREADS, 0)?;
    conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(ctx, temp)))?;
    Ok(conn)
}

/// The authorizer: what a statement may do, decided as SQLite prepares it.
fn authorize(ctx: AuthContext<'_>, temp: Temp) -> Authorization {
    match ctx.action {
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
            if temp == Temp::Denied =>
        {
            Authorization::Deny
        }
        AuthAction::Pragma { .. }
        | AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Unknown { .. } => Authorization::Deny,
        AuthAction::CreateVtable { module_name, .. } | AuthAction::DropVtable { module_name, .. } => {
            if ALLOWED_MODULES.iter().any(|m| m.eq_ignore_ascii_case(module_name)) {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name } => {
            if DENIED_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(function_name)) {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        _ => Authorization::Allow,
    }
}

/// Prepares, binds and runs one statement on this thread.
fn run_statement(
    conn: &mut Connection,
    sql: &str,
    params: &[SqlValue],
    deadline: Instant,
    max_rows: usize,
) -> Result<Vec<u8>, Failure> {
    // Interrupts a statement that runs past the deadline.
    conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline)).map_err(sqlite_error)?;
    let result = (|| {
        let mut stmt = conn.prepare(sql).map_err(sqlite_error)?;
        if stmt.parameter_count() != params.len() {
            // Typically a placeholder inside a string literal
            // (`LIKE '%${q}%'`), which SQLite would silently not bind.
            return Err(Failure::Message(format!(
                "the statement takes {} parameters but the template gives {}; a ${{name}} inside \
                 quotes is not a parameter (build the pattern in the script, e.g. q = \"%\" + q + \"%\")",
                stmt.parameter_count(),
                params.len()
            )));
        }
        for (i, value) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, value).map_err(sqlite_error)?;
        }
        if stmt.column_count() == 0 {
            let n = stmt.raw_execute().map_err(sqlite_error)?;
            return Ok(Reply::affected(n as u64));
        }
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let booleans: Vec<bool> =
            stmt.columns().map(|c| c.decl_type().is_some_and(|t| t.eq_ignore_ascii_case("BOOLEAN"))).collect();
        let mut reply = Reply::rows(names.iter().map(String::as_str), max_rows);
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut cells = Vec::with_capacity(names.len());
            for (i, boolean) in booleans.iter().enumerate() {
                let cell = match row.get_ref(i).map_err(sqlite_error)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) if *boolean => Cell::Bool(n != 0),
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(f) => Cell::Float(f),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Cell::Text(t),
                        Err(_) => Cell::Owned(String::from_utf8_lossy(t).into_owned()),
                    },
                    ValueRef::Blob(b) => {
                        if b.len() * 2 > MAX_REPLY_BYTES {
                            return Err(super::over_reply_cap());
                        }
                        Cell::Owned(format!("\\x{}", hex::encode(b)))
                    }
                };
                cells.push(cell);
            }
            reply.push_row(cells)?;
        }
        Ok(reply.finish())
    })();
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    result
}

/// The value bound by its own JSON type (SQLite types values, not
/// columns); lists and dicts as their JSON text.
pub(crate) fn bind(value: &Param<'_>) -> SqlValue {
    match value {
        Param::Null => SqlValue::Null,
        Param::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Param::Int(i) => SqlValue::Integer(*i),
        Param::Float(f) => SqlValue::Real(*f),
        Param::Text(s) => SqlValue::Text(s.clone()),
        Param::Json(raw) => SqlValue::Text(raw.get().to_string()),
    }
}

/// An SQLite error as the script sees it, by its code.
fn sqlite_error(err: rusqlite::Error) -> Failure {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::OperationInterrupted => Failure::Timeout,
        rusqlite::Error::SqliteFailure(e, msg) if e.code == ErrorCode::AuthorizationForStatementDenied => {
            Failure::Refused(format!(
                "database error: {} (the host does not allow this statement)",
                msg.as_deref().unwrap_or("not authorized")
            ))
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => Failure::Message(format!("database error: {msg}")),
        rusqlite::Error::MultipleStatement => {
            Failure::Message("one SQL statement at a time: the text holds more than one".into())
        }
        other => Failure::Message(format!("database error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(conn: &mut Connection, sql: &str) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        match run_statement(conn, sql, &[], deadline, 100) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|e| e.to_string())?),
            Err(Failure::Message(m) | Failure::Refused(m) | Failure::Limit(m)) => Err(m),
            Err(Failure::Timeout) => Err("timeout".into()),
        }
    }

    #[test]
    fn the_engine_refuses_what_the_classifier_would_refuse_too() {
        // The authorizer runs while SQLite prepares, so EXPLAIN does not
        // smuggle a pragma past it.
        let mut conn = open_scratch().expect("scratch");
        for sql in [
            "PRAGMA hard_heap_limit = 1",
            "EXPLAIN PRAGMA hard_heap_limit = 1",
            "EXPLAIN PRAGMA writable_schema = 1",
            "EXPLAIN QUERY PLAN PRAGMA trusted_schema = 1",
            "ATTACH DATABASE '/tmp/avap-authorizer-test.db' AS x",
            "BEGIN",
            "SAVEPOINT s",
            "SELECT load_extension('/tmp/x.so')",
            "SELECT fts3_tokenizer('simple')",
            "CREATE VIRTUAL TABLE v USING dbstat",
        ] {
            let err = run(&mut conn, sql).expect_err(sql);
            assert!(err.contains("not authorized") || err.contains("no such"), "{sql}: {err}");
        }
        assert!(!std::path::Path::new("/tmp/avap-authorizer-test.db").exists());
        // The heap limit was not lowered: a 4 MB value still fits.
        let big = run(&mut conn, "SELECT length(randomblob(4000000)) AS n").expect("heap intact");
        assert_eq!(big["rows"][0][0], 4_000_000);
        // A value past the reply cap is refused by SQLite itself.
        let err = run(&mut conn, "SELECT length(randomblob(100000000)) AS n").expect_err("too big");
        assert!(err.contains("too big"), "{err}");
        // Full-text search is allowed.
        run(&mut conn, "CREATE VIRTUAL TABLE docs USING fts5(body)").expect("fts5");
    }

    #[test]
    fn a_scratch_database_is_capped_temporary_tables_too() {
        for table in ["t", "temp.t"] {
            let mut conn = open_scratch().expect("scratch");
            let create = if table == "t" { "CREATE TABLE t (b BLOB)" } else { "CREATE TEMP TABLE t (b BLOB)" };
            run(&mut conn, create).expect("create");
            let mut err = String::new();
            for _ in 0..20 {
                if let Err(e) = run(&mut conn, &format!("INSERT INTO {table} VALUES (randomblob(1000000))")) {
                    err = e;
                    break;
                }
            }
            assert!(err.contains("full"), "{table}: {err}");
        }
    }

    #[test]
    fn a_shared_file_connection_holds_no_temporary_objects() {
        let dir = std::env::temp_dir().join(format!("avap-sqlite-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut conn = open_file(&dir.join("db.sqlite"), Duration::from_secs(1)).expect("file");
        let err = run(&mut conn, "CREATE TEMP TABLE t (x)").expect_err("denied");
        assert!(err.contains("not authorized"), "{err}");
        run(&mut conn, "CREATE TABLE IF NOT EXISTS t (x)").expect("a real table is fine");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn statements_stop_at_the_deadline() {
        let mut conn = open_scratch().expect("scratch");
        let started = Instant::now();
        let sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
        let result = run_statement(&mut conn, sql, &[], Instant::now() + Duration::from_millis(100), 10);
        assert!(matches!(result, Err(Failure::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(1));
        // The connection is usable afterwards.
        assert!(run(&mut conn, "SELECT 1 AS one").is_ok());
    }
}
