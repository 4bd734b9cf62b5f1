//! The `http` and `db` capabilities beyond the case folders: what never
//! leaves the host, what a deployment that grants nothing sees, the
//! built-in SQLite database, and that waiting on I/O holds no thread.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fixtures::{PgSchema, Upstream};
use super::{Server, config};

fn result(body: &Value) -> &Value {
    &body["result"]
}

#[tokio::test]
async fn refused_destinations_receive_no_traffic() {
    let allowed = Upstream::start().await;
    let other = Upstream::start().await;
    let server = Server::start(config(|c| c.http_allow = allowed.authority.parse().expect("allow-list"))).await;
    let port = other.port();
    let script = format!(
        "try()\n RequestGet(\"{other}/text\", , , r)\nexception(direct)\nend()\n\
         try()\n RequestGet(\"http://localhost:{port}/text\", , , r)\nexception(by_name)\nend()\n\
         try()\n RequestGet(\"http://[::1]:{port}/text\", , , r)\nexception(v6)\nend()\n\
         try()\n RequestGet(\"http://[::ffff:127.0.0.1]:{port}/text\", , , r)\nexception(mapped)\nend()\n\
         try()\n RequestGet(\"{allowed}/redirect\", {{\"to\": \"http://localhost:{port}/text\"}}, , r)\nexception(redirected)\nend()\n\
         try()\n RequestPost(\"{allowed}/redirect\", {{\"to\": \"{other}/echo\"}}, , \"x\", r)\nexception(post_redirected)\nend()\n\
         addResult(direct)\naddResult(by_name)\naddResult(v6)\naddResult(mapped)\naddResult(redirected)\naddResult(post_redirected)",
        other = other.base,
        allowed = allowed.base,
    );
    let (status, body) = server.run(&script).await;
    assert_eq!(status, 200, "{body}");
    let r = result(&body);
    assert_eq!(r["direct"], "RequestGet: destination refused: 127.0.0.1 is a loopback address");
    assert!(r["by_name"].as_str().is_some_and(|m| m.starts_with("RequestGet: destination refused: localhost")), "{r}");
    for key in ["by_name", "redirected"] {
        let msg = r[key].as_str().unwrap_or_default();
        assert!(msg.contains("destination refused: localhost resolves to"), "{key}: {msg}");
        assert!(msg.contains("a loopback address"), "{key}: {msg}");
    }
    assert_eq!(r["v6"], "RequestGet: destination refused: ::1 is a loopback address");
    assert_eq!(r["mapped"], "RequestGet: destination refused: ::ffff:127.0.0.1 is a loopback address");
    assert_eq!(r["post_redirected"], "RequestPost: destination refused: 127.0.0.1 is a loopback address");
    assert_eq!(other.hits(), 0, "a refused destination received a request");
    assert_eq!(allowed.hits(), 2, "the allow-listed service sees exactly the two redirecting requests");
}

#[tokio::test]
async fn a_host_that_grants_nothing_answers_with_catchable_errors() {
    let upstream = Upstream::start().await;
    let server = Server::start(config(|c| {
        c.capabilities = Default::default();
        c.http_allow = upstream.authority.parse().expect("allow-list");
    }))
    .await;
    let script = format!(
        "try()\n RequestGet(\"{}/text\", , , r)\nexception(http)\nend()\n\
         try()\n ormDirect(\"SELECT 1\", r)\nexception(db)\nend()\naddResult(http)\naddResult(db)",
        upstream.base
    );
    let (status, body) = server.run(&script).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["http"], "RequestGet: capability 'http' is not granted by this host");
    assert_eq!(result(&body)["db"], "ormDirect: capability 'db' is not granted by this host");
    assert_eq!(upstream.hits(), 0);
    // Outside try() it is an ordinary runtime error (400).
    let (status, body) = server.run("ormDirect(\"SELECT 1\", r)").await;
    assert_eq!(status, 400, "{body}");
    let (_, health) = server.get_text("/health").await;
    let health: Value = serde_json::from_str(&health).unwrap_or_default();
    assert_eq!(health["capabilities"], json!({"granted": [], "http": null, "db": null}));
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("avap_capability_calls_total{capability=\"http\",result=\"error\"} 1"), "{metrics}");
    assert!(metrics.contains("avap_capability_calls_total{capability=\"db\",result=\"error\"} 2"), "{metrics}");
}

/// The default database: a scratch SQLite database of each execution's own.
#[tokio::test]
async fn sqlite_scratch_databases_belong_to_one_execution() {
    let server = std::sync::Arc::new(Server::start(config(|c| c.db_statement_timeout_ms = 300)).await);
    let script = "ormDirect(\"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, done BOOLEAN, weight REAL)\", c)\n\
                  addVar(b, \"it's; DROP TABLE notes; --\")\n\
                  ormDirect(`INSERT INTO notes (body, done, weight) VALUES (${b}, true, 1.5)`, i1)\n\
                  ormDirect(`INSERT INTO notes (body, done, weight) VALUES ('${b}', false, NULL)`, i2)\n\
                  addVar(evil, \"x' OR '1'='1\")\n\
                  ormDirect(\"SELECT id, body, done, weight FROM notes ORDER BY id\", rows)\n\
                  ormDirect(`SELECT id FROM notes WHERE body = ${evil}`, none)\n\
                  addResult(c)\naddResult(i1)\naddResult(i2)\naddResult(rows)\naddResult(none)";
    let (status, body) = server.run(script).await;
    assert_eq!(status, 200, "{body}");
    let text = "it's; DROP TABLE notes; --";
    assert_eq!(
        result(&body),
        &json!({
            "c": "Success: 0", "i1": "Success: 1", "i2": "Success: 1",
            "rows": [{"id": 1, "body": text, "done": true, "weight": 1.5}, {"id": 2, "body": text, "done": false, "weight": null}],
            "none": []
        })
    );
    // The next execution starts from an empty database: no other script's
    // tables to read, change or drop.
    let peek = "try()\n ormDirect(\"SELECT count(*) AS n FROM notes\", n)\nexception(e)\nend()\n\
                ormDirect(\"SELECT count(*) AS n FROM sqlite_schema\", tables)\naddResult(e)\naddResult(tables)";
    let (status, body) = server.run(peek).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["e"], "ormDirect: database error: no such table: notes");
    assert_eq!(result(&body)["tables"], json!([{"n": 0}]));
    // One execution busy in its database holds nothing another one needs.
    let busy = server.clone();
    let long = tokio::spawn(async move {
        busy.run("try()\n ormDirect(\"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r\", x)\nexception(e)\nend()\naddResult(e)").await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (status, body) = server.run("ormDirect(\"SELECT 1 AS one\", r)\naddResult(r)").await;
    assert_eq!((status, result(&body)), (200, &json!({"r": [{"one": 1}]})), "{body}");
    assert!(started.elapsed() < Duration::from_millis(250), "waited {:?} behind another script", started.elapsed());
    // The runaway statement is interrupted at the statement timeout.
    let (status, body) = long.await.expect("task");
    assert_eq!(
        (status, &result(&body)["e"]),
        (200, &json!("ormDirect: statement timeout of 300 ms exceeded")),
        "{body}"
    );
    // One statement at a time: a second one is refused, not run.
    let stacked = "try()\n ormDirect(\"SELECT 1; DELETE FROM notes\", x)\nexception(e)\nend()\naddResult(e)";
    let (status, body) = server.run(stacked).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["e"], "ormDirect: one SQL statement at a time: the text holds more than one");
    // Nothing reaches the host's files or memory through SQLite.
    for (sql, expect) in [
        ("ATTACH DATABASE '/tmp/avap-escape.db' AS x", "'ATTACH' statements are not allowed"),
        ("VACUUM INTO '/tmp/avap-escape.db'", "'VACUUM' statements are not allowed"),
        ("PRAGMA writable_schema = ON", "'PRAGMA' statements are not allowed"),
        ("EXPLAIN PRAGMA hard_heap_limit = 1", "EXPLAIN may only explain"),
        ("BEGIN", "'BEGIN' statements are not allowed"),
        ("SELECT length(randomblob(1000000000)) AS n", "string or blob too big"),
    ] {
        let script = format!("try()\n ormDirect(\"{sql}\", x)\nexception(e)\nend()\naddResult(e)");
        let (status, body) = server.run(&script).await;
        assert_eq!(status, 200, "{body}");
        let msg = result(&body)["e"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(expect), "{sql}: {msg}");
    }
    assert!(!std::path::Path::new("/tmp/avap-escape.db").exists());
    // The process-wide heap cap is where it was: a 5 MB value still fits.
    let (status, body) = server.run("ormDirect(\"SELECT length(randomblob(5000000)) AS n\", r)\naddResult(r)").await;
    assert_eq!((status, result(&body)), (200, &json!({"r": [{"n": 5_000_000}]})), "{body}");
    // A NUL in the text (from the request) is refused, not looped on.
    let (status, body, _) = server
        .post(
            "/api/v1/execute",
            json!({"script": "try()\n ormDirect(q, x)\nexception(e)\nend()\naddResult(e)", "variables": {"q": "SELECT 1\u{0}"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["e"], "ormDirect: the statement contains a NUL character");
    // A placeholder inside quotes is not a parameter in SQLite: an error, not a silent miss.
    let script =
        "addVar(q, \"it\")\ntry()\n ormDirect(`SELECT ${q} LIKE '%${q}%' AS x`, x)\nexception(e)\nend()\naddResult(e)";
    let (status, body) = server.run(script).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        result(&body)["e"].as_str().is_some_and(|e| e.contains("takes 1 parameters but the template gives 2")),
        "{body}"
    );
}

/// `sqlite:path`: the operator chose one database shared by every execution.
#[tokio::test]
async fn a_sqlite_file_is_shared_by_every_execution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let server = Server::start(config(|c| c.db_url = format!("sqlite:{}", path.display()))).await;
    let (status, body) =
        server.run("ormDirect(\"CREATE TABLE t (x INTEGER)\", c)\normDirect(\"INSERT INTO t VALUES (7)\", i)").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.run("ormDirect(\"SELECT x FROM t\", r)\naddResult(r)").await;
    assert_eq!((status, result(&body)), (200, &json!({"r": [{"x": 7}]})), "{body}");
    let (_, health) = server.get_text("/health").await;
    assert!(health.contains("\"backend\":\"sqlite\""), "{health}");
}

#[tokio::test]
async fn statements_per_execution_are_capped() {
    let server = Server::start(config(|c| c.db_max_queries = 3)).await;
    let script = "startLoop(i, 1, 5)\n try()\n  ormDirect(\"SELECT 1 AS one\", r)\n exception(e)\n end()\nendLoop()\naddResult(r)\naddResult(e)";
    let (status, body) = server.run(script).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["r"], json!([{"one": 1}]));
    assert_eq!(result(&body)["e"], "ormDirect: limit exceeded: at most 3 database statements per execution");
}

/// Six executions each hold a connection for 300 ms; with a pool of two
/// they cannot all finish in under three rounds.
#[tokio::test]
async fn the_postgres_pool_is_shared_and_bounded() {
    let schema = PgSchema::create().await;
    let server = std::sync::Arc::new(
        Server::start(config(|c| {
            c.db_url = schema.url();
            c.db_max_connections = 2;
            c.timeout_ms = 10_000;
        }))
        .await,
    );
    let started = Instant::now();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { server.run("ormDirect(\"SELECT pg_sleep(0.3)\", r)\naddResult(r)").await })
        })
        .collect();
    for run in runs {
        let (status, body) = run.await.expect("task");
        assert_eq!((status, result(&body)), (200, &json!({"r": [{"pg_sleep": null}]})), "{body}");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(850), "6 x 300 ms on 2 connections took only {elapsed:?}");
}

/// On a single-threaded runtime: while one execution waits on a slow HTTP
/// service, another runs to completion. A host call that blocked the thread
/// would stall both (and the upstream too).
#[tokio::test(flavor = "current_thread")]
async fn waiting_on_http_holds_no_thread() {
    let upstream = Upstream::start().await;
    let server = std::sync::Arc::new(
        Server::start(config(|c| {
            c.http_allow = upstream.authority.parse().expect("allow-list");
            c.timeout_ms = 5000;
        }))
        .await,
    );
    let slow_server = server.clone();
    let slow_script = format!("RequestGet(\"{}/wait/700\", , , r)\naddResult(r)", upstream.base);
    let slow = tokio::spawn(async move {
        let out = slow_server.run(&slow_script).await;
        (out, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = server.run("addVar(a, 1)\naddResult(a)").await;
    let quick_done = Instant::now();
    assert_eq!(status, 200, "{body}");
    let ((status, body), slow_done) = slow.await.expect("slow task");
    assert_eq!((status, result(&body)), (200, &json!({"r": "waited"})), "{body}");
    assert!(quick_done < slow_done, "the quick execution waited for the slow one");
}

#[tokio::test]
async fn execution_deadline_cuts_a_slow_request() {
    let upstream = Upstream::start().await;
    let server = Server::start(config(|c| {
        c.http_allow = upstream.authority.parse().expect("allow-list");
        c.timeout_ms = 400;
    }))
    .await;
    let script = format!("try()\n RequestGet(\"{}/slow\", , , r)\nexception(e)\nend()\naddResult(e)", upstream.base);
    let started = Instant::now();
    let (status, body) = server.run(&script).await;
    let elapsed = started.elapsed();
    // The request gets what is left of the 400 ms deadline; when it gives
    // up, so has the execution.
    assert_eq!(status, 504, "{body}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    server.assert_healthy().await;
}

/// One connection, so every statement gets the session the previous one
/// left behind: settings, temporary tables and locks must not survive it.
/// (`set_config` is refused by name, but a function the operator made can
/// call it where no classifier looks.)
#[tokio::test]
async fn postgres_sessions_are_reset_between_executions() {
    let schema = PgSchema::create().await;
    let server = Server::start(config(|c| {
        c.db_url = schema.url();
        c.db_max_connections = 1;
    }))
    .await;
    schema
        .as_owner("CREATE FUNCTION dirty() RETURNS text LANGUAGE sql AS $$ SELECT set_config('application_name', 'hijacked', false) $$")
        .await;
    let dirty = "ormDirect(\"SELECT pg_backend_pid() AS pid\", p)\naddResult(p)\n\
                 ormDirect(\"SELECT dirty() AS a\", a)\n\
                 ormDirect(\"CREATE TEMP TABLE scratch (x int)\", t)\n\
                 ormDirect(\"SELECT pg_advisory_lock(42) AS l\", l)\naddResult(a)";
    let (status, body) = server.run(dirty).await;
    assert_eq!((status, &result(&body)["a"]), (200, &json!([{"a": "hijacked"}])), "{body}");
    let first_pid = result(&body)["p"].clone();
    let (status, body) = server
        .run("ormDirect(\"SELECT pg_backend_pid() AS pid\", p)\naddResult(p)\n\
              ormDirect(\"SELECT current_setting('application_name') AS a, pg_try_advisory_lock(42) AS free\", s)\naddResult(s)\n\
              ormDirect(\"SELECT pg_advisory_unlock_all()\", u)\n\
              try()\n ormDirect(\"SELECT count(*) AS n FROM scratch\", t)\nexception(e)\nend()\naddResult(e)")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["s"], json!([{"a": "avap-host", "free": true}]));
    // The same connection, reset rather than replaced: the reset works.
    assert_eq!(result(&body)["p"], first_pid, "the connection was replaced, not reset");
    assert!(result(&body)["e"].as_str().is_some_and(|e| e.contains("\"scratch\" does not exist")), "{body}");
}

/// An allow-listed name reaches its listed port, whatever it resolves to;
/// the same name on another port is judged like any other destination.
#[tokio::test]
async fn an_allow_listed_name_opens_only_its_port() {
    let allowed = Upstream::start().await;
    let other = Upstream::start().await;
    let (allowed_port, other_port) = (allowed.port(), other.port());
    let allow = format!("localhost:{allowed_port}").parse().expect("allow-list");
    let server = Server::start(config(|c| c.http_allow = allow)).await;
    let script = format!(
        "RequestGet(\"http://LocalHost:{allowed_port}/text\", , , ok)\n\
         try()\n RequestGet(\"http://localhost:{other_port}/text\", , , r)\nexception(e)\nend()\naddResult(ok)\naddResult(e)"
    );
    let (status, body) = server.run(&script).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["ok"], "hello, plain text");
    assert!(
        result(&body)["e"]
            .as_str()
            .is_some_and(|e| e.starts_with("RequestGet: destination refused: localhost resolves to")),
        "{body}"
    );
    assert_eq!((allowed.hits(), other.hits()), (1, 0));
}

/// The server cancels a statement at the execution's deadline (the timeout
/// is cut on the connection), so the connection survives to be reused
/// instead of being abandoned by the host.
#[tokio::test]
async fn postgres_statement_timeout_is_cut_to_the_deadline() {
    let schema = PgSchema::create().await;
    let server = Server::start(config(|c| {
        c.db_url = schema.url();
        c.db_max_connections = 1;
        c.db_statement_timeout_ms = 5000;
        c.timeout_ms = 600;
    }))
    .await;
    let pid = "ormDirect(\"SELECT pg_backend_pid() AS pid\", p)\naddResult(p)";
    let (status, before) = server.run(pid).await;
    assert_eq!(status, 200, "{before}");
    let started = Instant::now();
    let (status, body) = server.run("ormDirect(\"SELECT pg_sleep(3)\", r)").await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    let (status, after) = server.run(pid).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(result(&after)["p"], result(&before)["p"], "the connection was abandoned, not cancelled cleanly");
}

/// deploy/postgres-role.sql makes a role the host accepts, and that role
/// cannot reach the server's files even through a function it creates.
#[tokio::test]
async fn the_deploy_role_script_makes_a_role_the_host_accepts() {
    use super::fixtures::{pg_admin, pg_url};
    let id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
    );
    let (db, role) = (format!("avap_deploy_{id}"), format!("avap_scripts_{id}"));
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres-role.sql"))
        .expect("deploy/postgres-role.sql");
    let script = script.replace("avap_scripts", &role).replace("DATABASE app", &format!("DATABASE {db}"));
    pg_admin(&format!("CREATE DATABASE {db}")).await.expect("create database");
    let (scheme_host, _) = pg_url().rsplit_once('/').map(|(a, b)| (a.to_string(), b.to_string())).expect("url");
    let admin_db = format!("{scheme_host}/{db}");
    let (client, connection) = tokio_postgres::connect(&admin_db, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute(&script).await.expect("deploy/postgres-role.sql runs");
    // A function an operator made for scripts, run with the role's rights.
    client
        .batch_execute(&format!(
            "SET ROLE {role}; CREATE FUNCTION avap.reader() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$; RESET ROLE"
        ))
        .await
        .expect("function");
    drop(client);
    let host = scheme_host.rsplit_once('@').map_or(scheme_host.as_str(), |(_, h)| h).to_string();
    let url = format!("postgres://{role}:CHANGE-ME@{host}/{db}?options=-c%20search_path%3Davap");
    let server = Server::start(config(|c| c.db_url = url)).await;
    let (status, body) = server
        .run("ormDirect(\"CREATE TABLE notes (id int)\", c)\normDirect(\"INSERT INTO notes VALUES (1)\", i)\n\
              ormDirect(\"SELECT id FROM notes\", r)\naddResult(r)\n\
              try()\n ormDirect(\"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 1 $$\", f)\nexception(f)\nend()\naddResult(f)\n\
              try()\n ormDirect(\"SELECT avap.reader() AS x\", x)\nexception(e)\nend()\naddResult(e)\n\
              try()\n ormDirect(\"CREATE TABLE public.t (x int)\", p)\nexception(p)\nend()\naddResult(p)")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(result(&body)["r"], json!([{"id": 1}]));
    assert!(
        result(&body)["e"].as_str().is_some_and(|e| e.contains("permission denied for function pg_read_file")),
        "{body}"
    );
    assert!(result(&body)["p"].as_str().is_some_and(|e| e.contains("permission denied for schema public")), "{body}");
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = pg_admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")).await;
    pg_admin(&format!("DROP DATABASE {db}")).await.expect("drop database");
    pg_admin(&format!("DROP ROLE {role}")).await.expect("drop role");
}

/// The host refuses a superuser at start-up, unless told otherwise, loudly.
#[tokio::test]
async fn a_privileged_database_role_is_refused_at_start_up() {
    let superuser = super::fixtures::pg_url();
    let err = avap_host::AppState::new(&config(|c| c.db_url = superuser.clone())).await.err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("is or may become a superuser"), "{msg}");
    assert!(msg.contains("deploy/postgres-role.sql"), "{msg}");
    let server = Server::start(config(|c| {
        c.db_url = superuser;
        c.db_allow_privileged_role = true;
    }))
    .await;
    let (_, health) = server.get_text("/health").await;
    assert!(health.contains("\"privileged_role_allowed\":true"), "{health}");
}

/// A role that can become a privileged one (a member of it) is privileged.
#[tokio::test]
async fn a_member_of_a_privileged_role_is_refused() {
    use super::fixtures::pg_admin;
    for (grant, expect) in [
        ("postgres", "is or may become a superuser (postgres)"),
        ("pg_read_all_data", "is a member of (pg_read_all_data)"),
        ("pg_signal_backend", "is a member of (pg_signal_backend)"),
    ] {
        let schema = PgSchema::create().await;
        pg_admin(&format!("GRANT {grant} TO {}", schema.role)).await.expect("grant");
        let err = avap_host::AppState::new(&config(|c| c.db_url = schema.url())).await.err().expect("refused");
        assert!(format!("{err:#}").contains(expect), "{grant}: {err:#}");
    }
    let schema = PgSchema::create().await;
    let holder = format!("{}_creator", schema.role);
    pg_admin(&format!("CREATE ROLE {holder} CREATEROLE NOLOGIN; GRANT {holder} TO {}", schema.role))
        .await
        .expect("grant");
    let err = avap_host::AppState::new(&config(|c| c.db_url = schema.url())).await.err().expect("refused");
    let msg = format!("{err:#}");
    let _ = pg_admin(&format!("REVOKE {holder} FROM {}; DROP ROLE {holder}", schema.role)).await;
    assert!(msg.contains(&format!("may create roles (and grant itself any of them) ({holder})")), "{msg}");
    let schema = PgSchema::create().await;
    pg_admin(&format!("ALTER ROLE {} REPLICATION", schema.role)).await.expect("alter");
    let err = avap_host::AppState::new(&config(|c| c.db_url = schema.url())).await.err().expect("refused");
    assert!(format!("{err:#}").contains("replication"), "{err:#}");
}

/// A role granted one of the file functions is as privileged as a superuser.
#[tokio::test]
async fn a_role_granted_a_file_function_is_refused() {
    let schema = PgSchema::create().await;
    super::fixtures::pg_admin(&format!("GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {}", schema.role))
        .await
        .expect("grant");
    let err = avap_host::AppState::new(&config(|c| c.db_url = schema.url())).await.err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("may execute (pg_read_file)"), "{msg}");
    super::fixtures::pg_admin(&format!("GRANT pg_read_server_files TO {}", schema.role)).await.expect("grant");
    super::fixtures::pg_admin(&format!("REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM {}", schema.role))
        .await
        .expect("revoke");
    let err = avap_host::AppState::new(&config(|c| c.db_url = schema.url())).await.err().expect("refused");
    assert!(format!("{err:#}").contains("is a member of (pg_read_server_files)"), "{err:#}");
}
