//! Interop with the original AVAP servers, from messages captured from them
//! once (`fixtures/originals/`, see its CAPTURE.md): the Node definition
//! server's and the mock's `SyncCatalog` replies, a package the original
//! language server signed, and its answers to its own suite's scripts and
//! benchmark mix. The host applies those catalogs over real gRPC, runs
//! that package, and answers those scripts as the original did where the
//! original is right; where it is wrong, the deliberate difference (also
//! in docs/WIRE.md, "Differences from the original servers") is asserted.

use std::time::Duration;

use avap_wire::pb::CatalogResponse;
use axum::extract::Query;
use axum::http::StatusCode;
use prost::Message;
use serde_json::{Value, json};

use crate::catalog_sync::{host_for, original_servers, start_legacy, wait_health};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/originals");
/// Where the captured scripts sent their HTTP requests (the capture's
/// stand-in for jsonplaceholder.typicode.com).
const CAPTURED_STAND_IN: &str = "http://127.0.0.1:18098";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn catalog(name: &str) -> CatalogResponse {
    CatalogResponse::decode(fixture(name).as_slice()).unwrap_or_else(|e| panic!("{name} decodes: {e}"))
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in metrics"))
}

/// The Node brain sends a new `version_hash` (`v-<ms>`) on every call and
/// the same entries: polled, its catalog is applied once, every later poll
/// is `unchanged`, and `last_sync` moves on each of them.
#[tokio::test]
async fn the_node_brain_catalog_applies_once_and_later_polls_are_unchanged() {
    let first = catalog("node-sync-1.pb");
    let second = catalog("node-sync-2.pb");
    assert_eq!((first.commands.len(), first.total_count), (30, 30));
    assert_ne!(first.version_hash, second.version_hash, "the capture shows a new version_hash per call");
    assert!(first.commands.iter().all(|c| c.hash == "v-enterprise"), "its entry hashes say nothing either");
    let (legacy, port, _stop) = start_legacy(first).await;
    let (server, _) = host_for(port, original_servers).await;
    let health = wait_health(&server, Duration::from_secs(20), "the Node catalog", |h| {
        h["catalog"]["source"] == json!("brain") && h["brain"]["mode"] == json!("poll")
    })
    .await;
    assert_eq!(health["catalog"]["commands"], json!(30), "{health}");
    assert_eq!(health["catalog"]["interface_mismatches"], json!([]), "its interfaces are the built-ins': {health}");
    let applied_at = health["catalog"]["applied_at"].clone();
    let first_sync = health["catalog"]["last_sync"].as_str().map(str::to_string);

    // The second capture (another version_hash, same entries) from now on.
    *legacy.0.lock().expect("lock") = second;
    let later = wait_health(&server, Duration::from_secs(10), "two more polls", |h| {
        h["catalog"]["last_sync"].as_str().map(str::to_string) != first_sync
    })
    .await;
    assert_eq!(later["catalog"]["applied_at"], applied_at, "nothing was applied again: {later}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert_eq!(metric(&metrics, "avap_catalog_syncs_total{result=\"applied\"}"), 1, "{metrics}");
    assert!(metric(&metrics, "avap_catalog_syncs_total{result=\"unchanged\"}") >= 1, "{metrics}");
    // Its standard commands run natively; its own (`go`, `gather`) are not
    // supported here and say so.
    let (status, body) = server.run("addVar(h, \"abc\")\nencodeMD5(h, m)\naddResult(m)").await;
    assert_eq!((status, &body["result"]["m"]), (200, &json!("900150983cd24fb0d6963f7d28e17f72")), "{body}");
    let (status, body) = server.run("gather(1, 2)").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or_default().contains("not supported by this host"), "{body}");
}

/// An entry naming a built-in with other parameters: reported in
/// `/health` (name and what differs), that command not run, the rest of
/// the catalog applied.
#[tokio::test]
async fn an_interface_that_differs_from_the_built_in_is_reported_and_that_command_is_not_run() {
    let mut node = catalog("node-sync-1.pb");
    let entry = node.commands.iter_mut().find(|c| c.name == "getListLen").expect("getListLen");
    entry.interface_json = r#"[{"item":"TargetVariable","type":"var"},{"item":"SourceVariable","type":"var"}]"#.into();
    let (_legacy, port, _stop) = start_legacy(node).await;
    let (server, _) = host_for(port, original_servers).await;
    let health =
        wait_health(&server, Duration::from_secs(20), "the catalog", |h| h["catalog"]["source"] == "brain").await;
    assert_eq!(
        health["catalog"]["interface_mismatches"],
        json!([{"name": "getListLen",
                "reason": "interface lists (TargetVariable, SourceVariable), the built-in takes (SourceVariable, TargetVariable)"}]),
        "{health}"
    );
    let (status, body) = server.run("xs = [1, 2]\ngetListLen(xs, n)").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or_default().contains("'getListLen' is not supported"), "{body}");
    let (status, body) = server.run("xs = [1, 2]\nitemFromList(xs, 1, n)\naddResult(n)").await;
    assert_eq!((status, &body["result"]["n"]), (200, &json!(2)), "the rest applies: {body}");
}

/// A package the original language server signed (its `/api/v1/compile`
/// stored it in PostgreSQL): this host verifies it and runs it.
#[tokio::test]
async fn a_package_signed_by_the_original_runs() {
    use base64::Engine;
    let package = base64::engine::general_purpose::STANDARD.encode(fixture("original-package.bin"));
    let server = crate::Server::start(crate::config(original_servers)).await;
    let (status, body, _) = server.post("/api/v1/execute", json!({ "package": package })).await;
    assert_eq!((status, &body["result"]), (200, &json!({"status": "compiled"})), "{body}");
    // Outside --original-servers the shared secret itself signs nothing.
    let strict = crate::Server::default().await;
    let (status, body, _) = strict.post("/api/v1/execute", json!({ "package": package })).await;
    assert_eq!(status, 403, "{body}");
}

/// The stand-in for the service the suite's scripts call, serving what
/// the capture's stand-in served.
async fn stand_in() -> (String, tokio::sync::oneshot::Sender<()>) {
    use axum::routing::get;
    let comments = |Query(q): Query<Vec<(String, String)>>| async move {
        if q != [("postId".to_string(), "1".to_string())] {
            return axum::Json(json!([]));
        }
        axum::Json(json!([
            {"postId": 1, "id": 1, "name": "first", "email": "a@example.invalid", "body": "one"},
            {"postId": 1, "id": 2, "name": "second", "email": "b@example.invalid", "body": "two"}
        ]))
    };
    let app = axum::Router::new()
        .route(
            "/todos/1",
            get(|| async {
                axum::Json(json!({"userId": 1, "id": 1, "title": "delectus aut autem", "completed": false}))
            }),
        )
        .route("/comments", get(comments))
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(json!({}))) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (base, stop)
}

/// Where this host answers as the original did (status and `result`).
const SAME: &[&str] = &[
    "test_1",
    "test_2",
    "test_3",
    "test_4",
    "test_5",
    "test_6_1",
    "test_6_2",
    "test_7",
    "test_10",
    "test_11",
    "locust_pool_3",
    "locust_pool_4",
];

/// Where the original is wrong and this host differs on purpose: its
/// status and `result` here (docs/WIRE.md lists the original's beside them).
fn deliberate(id: &str) -> Option<(u16, Value)> {
    Some(match id {
        // `addParam` reads the request; a parameter that is not there is null
        // (the original's mock never read the request: {"n": "n"}).
        "locust_pool_1" => (200, json!({"n": null})),
        "probe_addparam_query" => (200, json!({"n": "Ann"})),
        "probe_addparam_missing" => (200, json!({"m": null})),
        // `addParam(status, 'OK')` stores into `OK`; `status` is not set.
        "locust_pool_5" => (200, json!({"status": null})),
        // A one-line function (the original dropped it: {}).
        "locust_pool_2" => (200, json!({"val": 121.0})),
        // while() loops (the original: 400 "Command not found: while").
        "locust_heavy" => (200, json!({"x": 1000})),
        _ => return None,
    })
}

/// Deliberate differences that are errors here: status and `kind`.
fn deliberate_error(id: &str) -> Option<(u16, &'static str)> {
    match id {
        // The original answered 200 with an empty result.
        "locust_syntax_error" => Some((400, "syntax_error")),
        // The original stored the text "1/0".
        "probe_div_zero" => Some((400, "runtime_error")),
        _ => None,
    }
}

/// The original's answers to its own suite's 12 tests, its benchmark mix
/// and a few probes, fed by its mock brain; this host fed by the same
/// catalog (the captured mock reply) over gRPC.
#[tokio::test]
async fn the_original_suite_and_benchmark_scripts_answer_as_the_original_where_it_is_right() {
    let answers: Vec<Value> = serde_json::from_slice(&fixture("answers.json")).expect("answers.json");
    let mock = catalog("mock-sync.pb");
    assert_eq!(mock.commands.len(), 11);
    let (base, _stop_stand_in) = stand_in().await;
    let authority = base.trim_start_matches("http://").to_string();
    let (_legacy, port, _stop) = start_legacy(mock).await;
    let (server, _) = host_for(port, |c| {
        original_servers(c);
        c.http_allow = authority.parse().expect("allow-list");
    })
    .await;
    let health =
        wait_health(&server, Duration::from_secs(20), "the mock catalog", |h| h["catalog"]["source"] == "brain").await;
    assert_eq!((&health["catalog"]["commands"], &health["catalog"]["interface_mismatches"]), (&json!(11), &json!([])));

    let mut checked = Vec::new();
    for record in &answers {
        let id = record["id"].as_str().expect("id");
        let path = record["path_and_query"].as_str().expect("path");
        let body_text = record["request_body"].to_string().replace(CAPTURED_STAND_IN, &base);
        let body: Value = serde_json::from_str(&body_text).expect("request body");
        let (status, ours, _) = server.post(path, body).await;
        let original = &record["response"];
        let original_status = record["status"].as_u64().and_then(|s| u16::try_from(s).ok()).expect("status");
        let context = format!("{id}: ours {status} {ours}; original {original_status} {original}");
        if SAME.contains(&id) {
            assert_eq!((status, &ours["result"]), (original_status, &original["result"]), "{context}");
        } else if let Some((want_status, want)) = deliberate(id) {
            assert_eq!((status, &ours["result"]), (want_status, &want), "{context}");
            assert_ne!((original_status, &original["result"]), (want_status, &want), "{id}: no longer a difference");
        } else if let Some((want_status, kind)) = deliberate_error(id) {
            assert_eq!((status, &ours["kind"]), (want_status, &json!(kind)), "{context}");
            assert_eq!(original_status, 200, "{id}: the original answered 200");
        } else {
            match id {
                // The command is missing in both; the messages are each
                // server's own.
                "test_8" => {
                    assert_eq!(status, original_status, "{context}");
                    let (e, m) = (&ours["result"]["detalle_error"], &ours["result"]["msg"]);
                    assert_eq!(e, m, "{context}");
                    assert!(e.as_str().is_some_and(|e| e.to_lowercase().contains("not found")), "{context}");
                }
                // _status = 500 from the handler; the reason is this host's.
                "test_9" => {
                    assert_eq!(status, original_status, "{context}");
                    assert_eq!(ours["result"]["mensaje_salida"], original["result"]["mensaje_salida"], "{context}");
                    assert!(ours["result"]["motivo"].as_str().is_some_and(|m| m.contains("HTTP 404")), "{context}");
                }
                // Compile answers differ by design (this host returns the
                // package and diagnostics); both accept the script.
                "test_12" => assert_eq!(status, original_status, "{context}"),
                other => panic!("answer {other} is not covered by this test"),
            }
        }
        checked.push(id.to_string());
    }
    assert_eq!(checked.len(), 23, "every captured answer is checked: {checked:?}");
}

/// `--compile-store`: `/api/v1/compile` also writes its package into the
/// original's `avap_bytecode` table (created if missing), where the
/// original's suite (test 12) and tools look for it; a second compile of
/// the name replaces it, and what is stored runs.
#[tokio::test]
async fn compiled_packages_go_into_the_original_table_with_a_compile_store() {
    use base64::Engine;
    let schema = crate::fixtures::PgSchema::create().await;
    let url = schema.url();
    let server = crate::Server::start(crate::config(|c| {
        c.compile_store = url.clone();
        c.compile_store_schema = schema.name.clone();
    }))
    .await;
    let compile = |script: &str| json!({"name": "test_custom_cmd", "script": script});
    let (status, first, _) =
        server.post("/api/v1/compile", compile("addVar('status', 'compiled')\naddResult('status')")).await;
    assert_eq!((status, &first["stored"]), (200, &json!(true)), "{first}");
    let (status, second, _) =
        server.post("/api/v1/compile", compile("addVar(status, 'again')\naddResult(status)")).await;
    assert_eq!((status, &second["stored"]), (200, &json!(true)), "{second}");

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let rows = client
        .query("SELECT bytecode, source_hash FROM avap_bytecode WHERE command_name = $1", &[&"test_custom_cmd"])
        .await
        .expect("the table exists");
    assert_eq!(rows.len(), 1, "one row per name");
    let bytecode: Vec<u8> = rows[0].get(0);
    let hash: String = rows[0].get(1);
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(engine.encode(&bytecode), second["package"].as_str().expect("package"), "the latest package");
    assert_eq!(hash.len(), 64);
    let (status, ran, _) = server.post("/api/v1/execute", json!({"package": engine.encode(&bytecode)})).await;
    assert_eq!((status, &ran["result"]), (200, &json!({"status": "again"})), "{ran}");

    // Without a store nothing is written, and the answer says so.
    let plain = crate::Server::default().await;
    let (status, body, _) = plain.post("/api/v1/compile", compile("addVar(a, 1)")).await;
    assert_eq!((status, &body["stored"]), (200, &json!(false)), "{body}");
    // The name fits the table's column.
    let long = json!({"name": "n".repeat(101), "script": "addVar(a, 1)"});
    let (status, body, _) = server.post("/api/v1/compile", long).await;
    assert_eq!(status, 400, "{body}");
}
