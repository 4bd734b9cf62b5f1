//! The cost of one sandboxed execution (fresh instance + run + drop) against
//! the same script run by the interpreter natively, in one run so the ratio
//! holds on a noisy machine.
//!
//! `cargo bench -p avap-benches`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
