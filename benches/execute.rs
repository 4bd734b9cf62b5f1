//! The cost of one sandboxed execution (fresh instance + run + drop) against
//! the same script run by the interpreter natively, in one run so the ratio
//! holds on a noisy machine.
//!
//! The `catalog` group is the trivial script in a fresh instance of the
//! guest as the host runs it: prepared (a snapshot holding the catalog) with
//! the built-in catalog, with the brain's 28 entries plus 100 `avap`
//! commands, and with 10,000 more; and, for contrast, unprepared with the
//! 128-entry catalog in the input, which is what every execution paid before
//! snapshots.
//!
//! The `db_select_*` groups measure a capability call: a sandboxed script
//! that runs one `ormDirect` statement, against the same statement run
//! directly on the host's capability (no guest), on in-memory SQLite, and on
//! PostgreSQL when `AVAP_BENCH_PG_URL` is set.
//!
//! `cargo bench -p avap-benches`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use std::sync::Arc;
use std::time::{Duration, Instant};

use avap_host::capability::Capabilities;
use avap_host::capability::db::{DbCapability, DbConfig, DbSession};
use avap_host::runtime::{Guest, Limits, SandboxEngine};

const SMALL: &str = "addVar(a, 1)\naddResult(a)";
const LOOP: &str = "total = 0\nstartLoop(i, 1, 1000)\n  total = total + i\nendLoop()\naddResult(total)";

fn input(script: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "script": script })).expect("json")
}

/// The guest's catalog document for the brain's catalog plus `extra` `avap`
/// commands, as the host builds it from a verified sync.
fn catalog_json(extra: usize) -> String {
    let dir = std::env::temp_dir().join(format!("avap-bench-catalog-{}-{extra}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("catalog dir");
    for i in 0..extra {
        let source = format!("function bench{i}(a) {{\n  return a + {i}\n}}\n");
        std::fs::write(dir.join(format!("bench{i}.avap")), source).expect("write");
    }
    let config = avap_brain::BrainConfig { catalog_dir: Some(dir.clone()), ..avap_brain::BrainConfig::dev() };
    let response = avap_brain::Brain::new(config).expect("brain").catalog();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(response.commands.len(), 29 + extra, "the brain's catalog, with its manifest");
    let mut host = avap_host::Config::defaults();
    host.dev = true;
    let trust = avap_host::catalog::Trust::from_config(&host).expect("trust");
    let verified = avap_host::catalog::verify(&response, &trust).expect("verified catalog");
    verified.guest_json().get().to_string()
}

fn prepared(rt: &tokio::runtime::Runtime, engine: &SandboxEngine, guest: &Guest, catalog: &str) -> Guest {
    let limits = Limits { fuel: u64::MAX / 4, timeout: Duration::from_secs(60), ..Limits::default() };
    let doc = format!("{{\"catalog\":{catalog}}}");
    let prepared = rt.block_on(engine.prepare(guest, doc.as_bytes(), &limits)).expect("prepare").expect("preparable");
    assert!(prepared.catalog_errors.is_empty(), "{:?}", prepared.catalog_errors);
    prepared.guest
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let limits = Limits::default();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let guest = rt.block_on(engine.load_guest(avap_host::GUEST_WASM, "built-in")).expect("guest");

    for (name, script) in [("small", SMALL), ("loop_1000", LOOP)] {
        let input = input(script);
        let mut group = c.benchmark_group(name);
        group.bench_function("sandboxed", |b| {
            b.iter(|| rt.block_on(engine.execute(&guest, &limits, &input)).expect("execution"))
        });
        group.bench_function("native", |b| b.iter(|| avap_guest_vm::run_json(&input)));
        group.finish();
    }

    let with_128 = catalog_json(100);
    let runners = [
        ("prepared_builtin", prepared(&rt, &engine, &guest, "{}"), input(SMALL)),
        ("prepared_128", prepared(&rt, &engine, &guest, &with_128), input(SMALL)),
        ("prepared_10028", prepared(&rt, &engine, &guest, &catalog_json(10_000)), input(SMALL)),
    ];
    let unprepared_input =
        format!(r#"{{"script":{},"catalog":{with_128}}}"#, serde_json::to_string(SMALL).expect("json"));
    let mut group = c.benchmark_group("catalog");
    for (name, runner, input) in &runners {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let out = rt.block_on(engine.execute(runner, &limits, input)).expect("execution");
                assert!(out.output.starts_with(br#"{"ok":true"#));
            })
        });
    }
    group.bench_function("unprepared_128_in_input", |b| {
        b.iter(|| {
            let out = rt.block_on(engine.execute(&guest, &limits, unprepared_input.as_bytes())).expect("execution");
            assert!(out.output.starts_with(br#"{"ok":true"#));
        })
    });
    group.finish();

    let mut databases = vec![("db_select_sqlite", "sqlite::memory:".to_string())];
    if let Ok(url) = std::env::var("AVAP_BENCH_PG_URL") {
        databases.push(("db_select_postgres", url));
    }
    let statement = "SELECT 1 AS one";
    let request = serde_json::to_vec(&json!({ "sql": [statement], "params": [] })).expect("json");
    let input = input(&format!("ormDirect(\"{statement}\", r)\naddResult(r)"));
    for (name, url) in databases {
        let connect = || {
            let config = DbConfig { url: url.clone(), ..DbConfig::default() };
            rt.block_on(DbCapability::connect(config)).expect("database")
        };
        let caps = Capabilities { db: Some(connect()), ..Capabilities::default() };
        let engine = SandboxEngine::with_capabilities(&limits, Arc::new(caps)).expect("engine");
        let guest = rt.block_on(engine.load_guest(avap_host::GUEST_WASM, "built-in")).expect("guest");
        let direct = connect();
        let mut group = c.benchmark_group(name);
        group.bench_function("sandboxed", |b| {
            b.iter(|| {
                let out = rt.block_on(engine.execute(&guest, &limits, &input)).expect("execution");
                assert!(out.output.starts_with(br#"{"ok":true"#));
            })
        });
        // A fresh session each time, as each execution has (for SQLite, a
        // scratch database of its own).
        group.bench_function("direct", |b| {
            b.iter(|| {
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut session = DbSession::default();
                rt.block_on(direct.run(&request, deadline, &mut session)).expect("statement")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
