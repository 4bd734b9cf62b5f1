//! Containment tests with tiny WAT guests, one per way an execution can end.
use super::snapshot::{MAX_GUEST_TEXT_BYTES, guest_text};
use super::*;

/// A guest that keeps to the ABI; `run` is the body of `avap_run`, which
/// must leave an i64 on the stack. Memory: 1 page, version string at 0.
fn wat_guest(run: &str, extra: &str) -> String {
    format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 0) "9.9.9")
          (data (i32.const 16) "{{\"ok\":true}}")
          (func (export "avap_abi_version") (result i32) i32.const 1)
          (func (export "avap_guest_version") (result i64) i64.const 5)
          (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
          (func (export "avap_run") (param i32 i32) (result i64) {run})
          {extra})"#
    )
}

/// Returns the 11-byte `{"ok":true}` at offset 16.
const OK_OUTPUT: &str = "i64.const 0x100000000b";

fn limits() -> Limits {
    Limits { max_concurrency: 4, fuel: 10_000_000, timeout: Duration::from_secs(5), ..Limits::default() }
}

async fn run(wat: &str, limits: &Limits) -> Result<Execution, SandboxError> {
    let engine = SandboxEngine::new(limits).expect("engine");
    let guest = engine.load_guest(wat.as_bytes(), "test").await.expect("load");
    engine.execute(&guest, limits, b"{}").await
}

#[tokio::test]
async fn a_well_behaved_guest_returns_its_output() {
    let exec = run(&wat_guest(OK_OUTPUT, ""), &limits()).await.expect("ok");
    assert_eq!(exec.output, br#"{"ok":true}"#);
    assert!(exec.fuel_used > 0);
}

#[tokio::test]
async fn load_reports_version_digest_and_abi() {
    let limits = limits();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let wat = wat_guest(OK_OUTPUT, "");
    let guest = engine.load_guest(wat.as_bytes(), "test").await.expect("load");
    assert_eq!(guest.info().version, "9.9.9");
    assert_eq!(guest.info().abi_version, 1);
    assert_eq!(guest.info().digest, module_digest(wat.as_bytes()));
    assert_eq!(guest.info().digest.len(), "sha256:".len() + 64);
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let err = run(&wat_guest("(loop br 0) i64.const 0", ""), &limits()).await.expect_err("must stop");
    assert!(matches!(err, SandboxError::OutOfFuel(10_000_000)), "{err:?}");
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline_when_fuel_is_plenty() {
    let limits = Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(20), ..limits() };
    let started = Instant::now();
    let err = run(&wat_guest("(loop br 0) i64.const 0", ""), &limits).await.expect_err("must stop");
    assert!(matches!(err, SandboxError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn memory_growth_past_the_cap_is_a_memory_limit() {
    // Grow one page at a time until refused, then trap like a Rust guest
    // whose allocation failed.
    let body = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable";
    let limits = Limits { max_memory_bytes: 2 << 20, ..limits() };
    let err = run(&wat_guest(body, ""), &limits).await.expect_err("must stop");
    assert!(matches!(err, SandboxError::MemoryLimit(_)), "{err:?}");
}

#[tokio::test]
async fn runaway_recursion_is_a_stack_overflow() {
    let extra = "(func $f (result i64) call $f)";
    let err = run(&wat_guest("call $f", extra), &limits()).await.expect_err("must stop");
    assert!(matches!(err, SandboxError::StackOverflow), "{err:?}");
}

#[tokio::test]
async fn output_outside_memory_or_over_the_cap_is_refused() {
    let err = run(&wat_guest("i64.const 0xffff000000000010", ""), &limits()).await.expect_err("bad ptr");
    assert!(matches!(err, SandboxError::GuestAbi(_)), "{err:?}");
    let limits = Limits { max_output_bytes: 4, ..limits() };
    let err = run(&wat_guest(OK_OUTPUT, ""), &limits).await.expect_err("too big");
    assert!(matches!(err, SandboxError::OutputTooLarge { size: 11, limit: 4 }), "{err:?}");
}

#[tokio::test]
async fn a_trap_is_a_guest_crash() {
    let err = run(&wat_guest("unreachable", ""), &limits()).await.expect_err("trap");
    assert!(matches!(err, SandboxError::GuestCrash(_)), "{err:?}");
}

#[tokio::test]
async fn memory_written_by_one_execution_is_not_seen_by_the_next() {
    // Returns the 11-byte ok output if the word at 8192 is zero, then
    // writes a secret there; a shared memory would fail the second run.
    let body = "(if (i32.ne (i32.load (i32.const 8192)) (i32.const 0)) (then unreachable))
                (i32.store (i32.const 8192) (i32.const 0x5ec2e7)) i64.const 0x100000000b";
    let limits = limits();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let guest = engine.load_guest(wat_guest(body, "").as_bytes(), "test").await.expect("load");
    for _ in 0..20 {
        engine.execute(&guest, &limits, b"{}").await.expect("fresh memory every time");
    }
}

/// A guest with `avap_prepare` whose every run bumps a global and a
/// word of the memory the snapshot holds, then grows the memory and
/// reads the new page's last byte before writing it. It answers four
/// digits: the global, the word, the page count before growing, and
/// that byte. Prepared, the global and word are 7 and the memory three
/// pages: every execution must answer "8830", however many ran before
/// (and an unprepared one "1120").
const STATEFUL_GUEST: &str = r#"(module
  (memory (export "memory") 2)
  (global $counter (mut i32) (i32.const 0))
  (data (i32.const 0) "9.9.9")
  (data (i32.const 16) "{\"ok\":true}")
  (func (export "avap_abi_version") (result i32) i32.const 1)
  (func (export "avap_guest_version") (result i64) i64.const 5)
  (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "avap_prepare") (param i32 i32) (result i64)
    (global.set $counter (i32.const 7))
    (drop (memory.grow (i32.const 1)))
    (i32.store (i32.const 65544) (i32.const 7))
    i64.const 0x100000000b)
  (func (export "avap_run") (param i32 i32) (result i64) (local $pages i32) (local $last i32)
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (i32.store (i32.const 65544) (i32.add (i32.load (i32.const 65544)) (i32.const 1)))
    (local.set $pages (memory.size))
    (drop (memory.grow (i32.const 64)))
    (local.set $last (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 8)))
    (i32.store8 (i32.const 64) (i32.add (i32.const 48) (global.get $counter)))
    (i32.store8 (i32.const 65) (i32.add (i32.const 48) (i32.load (i32.const 65544))))
    (i32.store8 (i32.const 66) (i32.add (i32.const 48) (local.get $pages)))
    (i32.store8 (i32.const 67) (i32.add (i32.const 48) (i32.load8_u (local.get $last))))
    (i32.store8 (local.get $last) (i32.const 9))
    i64.const 0x4000000004))"#;

#[tokio::test]
async fn a_snapshot_starts_every_execution_from_its_own_state() {
    let limits = Limits { max_concurrency: 2, ..limits() };
    let engine = SandboxEngine::new(&limits).expect("engine");
    let wasm = wat::parse_str(STATEFUL_GUEST).expect("wat");
    let base = engine.load_guest(&wasm, "test").await.expect("load");
    let prepared = engine.prepare(&base, b"{}", &limits).await.expect("prepare").expect("preparable");
    assert!(prepared.guest.is_prepared());
    assert!(prepared.guest.info().snapshot.is_some());
    // More executions than pool slots, so slots are reused; base and
    // snapshot interleaved, so a slot moves between the two modules.
    for round in 0..12 {
        let exec = engine.execute(&prepared.guest, &limits, b"{}").await.expect("snapshot run");
        assert_eq!(exec.output, b"8830", "round {round}: the snapshot's state, untouched by earlier runs");
        let exec = engine.execute(&base, &limits, b"{}").await.expect("base run");
        assert_eq!(exec.output, b"1120", "round {round}: the module's own initial state");
    }
    // Concurrent executions each see their own copy.
    let runs = (0..6).map(|_| engine.execute(&prepared.guest, &limits, b"{}"));
    for exec in futures_util::future::join_all(runs).await {
        assert_eq!(exec.expect("concurrent run").output, b"8830");
    }
}

#[tokio::test]
async fn a_guest_without_prepare_or_in_text_form_runs_unprepared() {
    let limits = limits();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let text = engine.load_guest(STATEFUL_GUEST.as_bytes(), "test").await.expect("load text");
    assert!(engine.prepare(&text, b"{}", &limits).await.expect("prepare").is_none());
    let wasm = wat::parse_str(wat_guest(OK_OUTPUT, "")).expect("wat");
    let plain = engine.load_guest(&wasm, "test").await.expect("load");
    assert!(engine.prepare(&plain, b"{}", &limits).await.expect("prepare").is_none());
}

#[test]
fn what_a_guest_says_of_itself_is_bounded() {
    assert_eq!(guest_text("short"), "short");
    let long = "é".repeat(MAX_GUEST_TEXT_BYTES);
    let cut = guest_text(&long);
    assert!(cut.len() <= MAX_GUEST_TEXT_BYTES + 4 && cut.ends_with(" ..."), "{}", cut.len());
}

#[tokio::test]
async fn a_refused_or_failing_prepare_is_a_load_error() {
    let limits = limits();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let refusing = STATEFUL_GUEST
        .replace(
            r#"(data (i32.const 0) "9.9.9")"#,
            r#"(data (i32.const 0) "9.9.9") (data (i32.const 32) "{\"ok\":false}")"#,
        )
        .replace("(i32.const 7))\n    i64.const 0x100000000b)", "(i32.const 7))\n    i64.const 0x200000000c)");
    assert!(refusing.contains("0x200000000c") && refusing.contains("ok\\\":false"), "{refusing}");
    let guest = engine.load_guest(&wat::parse_str(&refusing).expect("wat"), "test").await.expect("load");
    let err = engine.prepare(&guest, b"{}", &limits).await.err().expect("refused");
    assert!(err.to_string().contains("refused the catalog"), "{err}");
    let trapping = STATEFUL_GUEST.replace("(global.set $counter (i32.const 7))", "unreachable");
    let guest = engine.load_guest(&wat::parse_str(&trapping).expect("wat"), "test").await.expect("load");
    let err = engine.prepare(&guest, b"{}", &limits).await.err().expect("trap");
    assert!(matches!(err, LoadError::Prepare(_)), "{err}");
}

#[tokio::test]
async fn modules_off_the_abi_are_refused_at_load() {
    let limits = limits();
    let engine = SandboxEngine::new(&limits).expect("engine");
    let sneaky = wat_guest(OK_OUTPUT, "").replacen(
        "(module",
        r#"(module (import "wasi_snapshot_preview1" "path_open" (func))"#,
        1,
    );
    let err = engine.load_guest(sneaky.as_bytes(), "test").await.err().expect("refused");
    assert!(matches!(err, LoadError::Abi(AbiError::ForbiddenImport { .. })), "{err}");

    let wrong_abi = wat_guest(OK_OUTPUT, "").replace("(result i32) i32.const 1)", "(result i32) i32.const 2)");
    let err = engine.load_guest(wrong_abi.as_bytes(), "test").await.err().expect("refused");
    assert!(matches!(err, LoadError::Abi(AbiError::AbiVersion { found: 2, expected: 1 })), "{err}");

    let err = engine.load_guest(b"\0asm garbage", "test").await.err().expect("refused");
    assert!(matches!(err, LoadError::Compile(_)), "{err}");
}

#[tokio::test]
async fn the_gate_turns_away_requests_past_its_queueing_deadline() {
    let gate = Gate::new(1, Duration::from_millis(10));
    let held = gate.enter().await.expect("first slot");
    assert!(matches!(gate.enter().await, Err(SandboxError::Busy(_))));
    drop(held);
    assert!(gate.enter().await.is_ok());
}

/// A guest that imports the capability functions; `run` is the body of
/// `avap_run`. A request `{}` is at offset 32.
fn capability_guest(run: &str) -> String {
    format!(
        r#"(module
          (import "avap" "db_query" (func $db (param i32 i32) (result i32)))
          (import "avap" "reply_read" (func $read (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "9.9.9")
          (data (i32.const 32) "{{}}")
          (global $n (mut i32) (i32.const 0))
          (func (export "avap_abi_version") (result i32) i32.const 1)
          (func (export "avap_guest_version") (result i64) i64.const 5)
          (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
          (func (export "avap_run") (param i32 i32) (result i64) {run}))"#
    )
}

#[tokio::test]
async fn a_capability_call_round_trips_through_guest_memory() {
    // db_query, then reply_read of exactly that length at 1024, then
    // return that range as the output.
    let body = "(global.set $n (call $db (i32.const 32) (i32.const 2)))
                (drop (call $read (i32.const 1024) (global.get $n)))
                (i64.or (i64.const 0x40000000000) (i64.extend_i32_u (global.get $n)))";
    let exec = run(&capability_guest(body), &limits()).await.expect("ok");
    assert_eq!(exec.output, br#"{"error":"capability 'db' is not granted by this host"}"#);
}

#[tokio::test]
async fn capability_abi_violations_stop_the_execution() {
    for (body, expect) in [
        ("(drop (call $db (i32.const 65000) (i32.const 1000))) i64.const 0", "outside guest memory"),
        ("(drop (call $db (i32.const 0) (i32.const -1))) i64.const 0", "negative length"),
        ("(drop (call $read (i32.const 0) (i32.const 4))) i64.const 0", "no reply pending"),
        (
            "(global.set $n (call $db (i32.const 32) (i32.const 2)))
             (drop (call $read (i32.const 1024) (i32.const 3))) i64.const 0",
            "for a reply of",
        ),
        (
            "(global.set $n (call $db (i32.const 32) (i32.const 2)))
             (drop (call $read (i32.const 65530) (global.get $n))) i64.const 0",
            "outside guest memory",
        ),
    ] {
        let err = run(&capability_guest(body), &limits()).await.expect_err("must stop");
        match &err {
            SandboxError::GuestAbi(msg) => assert!(msg.contains(expect), "{msg} should mention {expect}"),
            other => panic!("{body}: expected a guest ABI error, got {other:?}"),
        }
    }
}

/// The interpreter this host embeds imports only the ABI's functions and
/// exports all of them (its `no_mangle` and `link` names are written out,
/// so this is where a typo would show).
#[test]
fn the_built_in_guest_speaks_the_abi_by_its_names() {
    let engine = Engine::new(&Config::new()).expect("engine");
    let module = Module::new(&engine, crate::GUEST_WASM).expect("the built-in guest compiles");
    abi::check_module(&module).expect("the built-in guest passes the ABI check");
    let mut imported: Vec<&str> =
        module.imports().filter(|i| i.module() == avap_abi::import::MODULE).map(|i| i.name()).collect();
    imported.sort_unstable();
    let mut wanted: Vec<&str> = avap_abi::import::ALL.iter().map(|f| f.name).collect();
    wanted.sort_unstable();
    assert_eq!(imported, wanted);
    for func in export::REQUIRED.iter().chain([&export::PREPARE]) {
        assert!(module.get_export(func.name).is_some(), "the built-in guest does not export {}", func.name);
    }
}
