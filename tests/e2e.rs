//! End-to-end tests: the real `avap-host` server on 127.0.0.1:0, real HTTP
//! requests, the real guest in real wasmtime: what the responses look
//! like, how executions end (fuel, deadline, memory, output), the gate,
//! health and metrics, compiled packages; the capabilities beyond the case
//! folders ([`capabilities`]), catalog sync with the real brain
//! ([`catalog_sync`]), and HTTP edge cases at the router ([`router`]).
//!
//! The case folders (`cases/`) have a binary of their own, `cases.rs`, one
//! test per folder.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod capabilities;
mod catalog_sync;
mod common;
mod ops;
mod originals;
mod router;
mod trust;

use common::{Server, config, fixtures};

#[tokio::test]
async fn execute_returns_the_wire_shape() {
    let server = Server::default().await;
    let (status, body) = server.run("addVar(a, 1)\naddResult(a)").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["result"], json!({"a": 1}));
    assert_eq!(body["variables"]["a"], json!(1));
    let logs = body["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0]["command"], json!("addVar"));
    assert_eq!(logs[0]["success"], json!(true));
    assert!(logs[0]["duration_ms"].is_number());
}

const BUSY_LOOP: &str =
    "x = 0\nstartLoop(i, 1, 900000)\n  x = x + i * 2 - 1\n  s = str(x) + \"-\"\nendLoop()\naddResult(x)";

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel_and_server_stays_healthy() {
    let server = Server::start(config(|c| c.fuel = 5_000_000)).await;
    let (status, body) = server.run(BUSY_LOOP).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["kind"], json!("out_of_fuel"));
    // Fuel is for the whole execution, so a small script still fits.
    server.assert_healthy().await;
}

#[tokio::test]
async fn long_script_hits_the_wall_clock_deadline() {
    let server = Server::start(config(|c| {
        c.fuel = u64::MAX / 2;
        c.timeout_ms = 30;
    }))
    .await;
    let started = Instant::now();
    let (status, body) = server.run(BUSY_LOOP).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["kind"], json!("timeout"));
    assert!(started.elapsed() < Duration::from_secs(2), "deadline enforced late: {:?}", started.elapsed());
    server.assert_healthy().await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let server = Server::start(config(|c| c.max_memory_mb = 8)).await;
    let script = format!(
        "s = \"{}\"\nstartLoop(i, 1, 90000)\n  variableToList(s + str(i), l)\nendLoop()\naddResult(l)",
        "x".repeat(1000)
    );
    let (status, body) = server.run(&script).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["kind"], json!("memory_limit"));
    assert!(body["error"].as_str().unwrap_or("").contains("memory limit"), "{body}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn deep_recursion_is_a_clear_error() {
    let server = Server::default().await;
    let (status, body) = server.run("function f(n) {\n  return f(n + 1)\n}\nr = f(0)").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["kind"], json!("limit_error"));
    assert!(body["error"].as_str().unwrap_or("").contains("max_call_depth"), "{body}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn huge_output_is_refused_whole() {
    let server = Server::start(config(|c| c.max_output_bytes = 64 << 10)).await;
    let script = "startLoop(i, 1, 20000)\n  variableToList(\"some text\", l)\nendLoop()\naddResult(l)";
    let (status, body) = server.run(script).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["kind"], json!("output_too_large"));
    server.assert_healthy().await;
}

#[tokio::test]
async fn full_gate_answers_503_with_retry_after() {
    let server = Server::start(config(|c| {
        c.max_concurrency = 1;
        c.queue_timeout_ms = 20;
        c.fuel = u64::MAX / 2;
        c.timeout_ms = 3000;
    }))
    .await;
    let slow = {
        let client = server.client.clone();
        let url = format!("{}/api/v1/execute", server.base);
        tokio::spawn(async move { client.post(url).json(&json!({"script": BUSY_LOOP})).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, headers) = server.post("/api/v1/execute", json!({"script": "addVar(a, 1)"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let slow = slow.await.expect("join").expect("slow request");
    // The slow one held its slot to an end of its own: done, out of time,
    // or out of interpreter steps, depending on the machine's speed.
    let slow_status = slow.status().as_u16();
    let slow_body: Value = slow.json().await.unwrap_or_default();
    assert!(
        slow_status == 200 || slow_status == 504 || (slow_status == 400 && slow_body["kind"] == "limit_error"),
        "{slow_status}: {slow_body}"
    );
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("avap_rejects_total{reason=\"busy\"} 1"), "{metrics}");
}

/// One thread serves everything here: the short request can only finish
/// while the long one runs if the guest yields to the runtime.
#[tokio::test(flavor = "current_thread")]
async fn a_long_script_does_not_starve_short_ones() {
    let server = Server::start(config(|c| {
        c.fuel = u64::MAX / 2;
        c.timeout_ms = 3000;
    }))
    .await;
    let long = {
        let client = server.client.clone();
        let url = format!("{}/api/v1/execute", server.base);
        tokio::spawn(async move {
            let r = client.post(url).json(&json!({"script": BUSY_LOOP})).send().await;
            (Instant::now(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = server.run("addVar(a, 1)\naddResult(a)").await;
    let short_done = Instant::now();
    assert_eq!(status, 200);
    let (long_done, long) = long.await.expect("join");
    long.expect("long request");
    assert!(short_done < long_done, "the short script waited for the long one");
}

#[tokio::test]
async fn health_and_metrics_describe_the_host() {
    let server = Server::default().await;
    let (status, text) = server.get_text("/health").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(health["status"], json!("healthy"));
    assert_eq!(health["service"], json!("avap-host"));
    assert_eq!(health["guest"]["source"], json!("built-in"));
    assert_eq!(health["guest"]["abi_version"], json!(1));
    assert!(health["guest"]["digest"].as_str().unwrap_or("").starts_with("sha256:"), "{health}");
    assert!(!health["guest"]["version"].as_str().unwrap_or("").is_empty(), "{health}");

    server.run("addVar(a, 1)").await;
    server.run("nosuch()").await;
    let (status, metrics) = server.get_text("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "avap_requests_total{outcome=\"ok\"} 1",
        "avap_requests_total{outcome=\"runtime_error\"} 1",
        "avap_execution_duration_seconds_count 2",
        "avap_active_executions 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn query_string_and_body_params_reach_addparam() {
    let server = Server::default().await;
    let (status, body, _) = server
        .post(
            "/api/v1/execute?id=7&name=Ann",
            json!({"script": "addParam(id, i)\naddParam(name, n)\naddParam(extra, e)\naddResult(i)\naddResult(n)\naddResult(e)", "extra": 2.5}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"i": 7, "n": "Ann", "e": 2.5}));
}

#[tokio::test]
async fn compile_returns_diagnostics_or_a_package_that_execute_runs() {
    let server = Server::default().await;
    let (status, body, _) =
        server.post("/api/v1/compile", json!({"name": "bad", "script": "x = (1 +\nif(a, b, =)\n"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["kind"], json!("syntax_error"));
    assert_eq!(body["diagnostics"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["diagnostics"][0]["line"], json!(1));

    let script = "addParam(n, n)\nr = n * 2\naddResult(r)";
    let (status, body, _) = server.post("/api/v1/compile", json!({"name": "double", "script": script})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], json!("double"));
    assert_eq!(body["commands"], json!(["addParam", "addResult"]));
    let package = body["package"].as_str().expect("package").to_string();

    let (status, body, _) = server.post("/api/v1/execute?n=21", json!({"package": package})).await;
    assert_eq!((status, &body["result"]), (200, &json!({"r": 42})), "{body}");

    // Flip one bit of the signed bytes: refused, never run.
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(&package).expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let (status, body, _) = server.post("/api/v1/execute?n=21", json!({"package": engine.encode(&bytes)})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["kind"], json!("integrity"));
    let (status, body, _) = server.post("/api/v1/execute", json!({"package": "%%%"})).await;
    assert_eq!(status, 400, "{body}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("avap_rejects_total{reason=\"integrity\"} 1"), "{metrics}");
}

/// The PostgreSQL fixture's drop guard: a test that panics still leaves
/// neither its schema nor its role behind.
#[tokio::test]
async fn a_fixture_schema_and_its_role_are_dropped_when_a_test_panics() {
    let (names_tx, names_rx) = std::sync::mpsc::channel();
    let failed = tokio::spawn(async move {
        let schema = fixtures::PgSchema::create().await;
        names_tx.send((schema.name.clone(), schema.role.clone())).expect("send the names");
        panic!("a test failing while it holds the schema");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()), "the task should have panicked");
    let (schema, role) = names_rx.recv().expect("the fixture was created");
    let (client, connection) =
        tokio_postgres::connect(&fixtures::pg_url(), tokio_postgres::NoTls).await.expect("connect as the admin");
    tokio::spawn(connection);
    let count = |sql: &'static str, name: String| {
        let client = &client;
        async move { client.query_one(sql, &[&name]).await.expect(sql).get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema.clone()).await, 0, "{schema}");
    assert_eq!(count("SELECT count(*) FROM pg_roles WHERE rolname = $1", role.clone()).await, 0, "{role}");
}
