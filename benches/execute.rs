//! The cost of one sandboxed execution (fresh instance + run + drop) against
//! the same script run by the interpreter natively, in one run so the ratio
//! holds on a noisy machine.
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
use avap_host::sandbox::{Limits, SandboxEngine};

const SMALL: &str = "addVar(a, 1)\naddResult(a)";
const LOOP: &str = "total = 0\nstartLoop(i, 1, 1000)\n  total = total + i\nendLoop()\naddResult(total)";

fn input(script: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "script": script })).expect("json")
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
