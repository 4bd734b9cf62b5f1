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

/// Every WASI function on the allow-list is linked, and each reaches only
/// what runtime/wasi.rs says: stdio into capped buffers, empty arguments and
/// environment, the clocks, randomness, nothing else (`EBADF` for any other
/// descriptor, `EFAULT` outside memory).
#[tokio::test]
async fn the_wasi_functions_reach_only_stdio_clocks_and_randomness() {
    let imports: String = avap_abi::import::WASI
        .iter()
        .map(|(name, _)| {
            let sig = match *name {
                "args_get" | "args_sizes_get" | "environ_get" | "environ_sizes_get" | "clock_res_get"
                | "random_get" | "fd_prestat_get" | "fd_fdstat_get" => "(param i32 i32) (result i32)",
                "clock_time_get" => "(param i32 i64 i32) (result i32)",
                "fd_write" => "(param i32 i32 i32 i32) (result i32)",
                "fd_close" => "(param i32) (result i32)",
                "fd_seek" => "(param i32 i64 i32 i32) (result i32)",
                "fd_prestat_dir_name" => "(param i32 i32 i32) (result i32)",
                "proc_exit" => "(param i32)",
                "sched_yield" => "(result i32)",
                other => panic!("a WASI function the test does not know: {other}"),
            };
            format!(r#"(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))"#)
        })
        .collect();
    // Each check stores its errno at 200 + 4*i; the output is 100 bytes at 200.
    let body = r#"
        ;; iovec at 64: "hi!\n" (at 96), 4 bytes
        (i32.store (i32.const 64) (i32.const 96)) (i32.store (i32.const 68) (i32.const 4))
        (i32.store (i32.const 96) (i32.const 0x0a216968))
        (i32.store (i32.const 200) (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 80)))
        (i32.store (i32.const 204) (call $fd_write (i32.const 2) (i32.const 64) (i32.const 1) (i32.const 80)))
        (i32.store (i32.const 208) (call $fd_write (i32.const 3) (i32.const 64) (i32.const 1) (i32.const 80)))
        (i32.store (i32.const 212) (call $fd_write (i32.const 1) (i32.const 65530) (i32.const 1) (i32.const 80)))
        (i32.store (i32.const 216) (call $environ_sizes_get (i32.const 120) (i32.const 124)))
        (i32.store (i32.const 220) (call $args_sizes_get (i32.const 128) (i32.const 132)))
        (i32.store (i32.const 224) (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 136)))
        (i32.store (i32.const 228) (call $clock_time_get (i32.const 9) (i64.const 0) (i32.const 136)))
        (i32.store (i32.const 232) (call $random_get (i32.const 144) (i32.const 16)))
        (i32.store (i32.const 236) (call $random_get (i32.const 65535) (i32.const 16)))
        (i32.store (i32.const 240) (call $fd_prestat_get (i32.const 3) (i32.const 160)))
        (i32.store (i32.const 244) (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 160)))
        (i32.store (i32.const 248) (call $fd_fdstat_get (i32.const 1) (i32.const 160)))
        (i32.store (i32.const 252) (call $fd_fdstat_get (i32.const 5) (i32.const 160)))
        (i32.store (i32.const 256) (call $sched_yield))
        (i32.store (i32.const 260) (call $fd_close (i32.const 9)))
        (i32.store (i32.const 264) (i32.load (i32.const 120)))
        (i32.store (i32.const 268) (i32.load (i32.const 80)))
        (i64.store (i32.const 272) (i64.load (i32.const 136)))
        (i64.store (i32.const 280) (i64.load (i32.const 144)))
        (i64.store (i32.const 288) (i64.load (i32.const 152)))
        i64.const 0xc800000064"#;
    let wat = format!(
        r#"(module {imports}
          (memory (export "memory") 1)
          (data (i32.const 0) "9.9.9")
          (func (export "avap_abi_version") (result i32) i32.const 1)
          (func (export "avap_guest_version") (result i64) i64.const 5)
          (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
          (func (export "avap_run") (param i32 i32) (result i64) {body}))"#
    );
    let exec = run(&wat, &limits()).await.expect("ran");
    let word = |i: usize| u32::from_le_bytes(exec.output[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let errnos: Vec<u32> = (0..16).map(word).collect();
    // SUCCESS 0, BADF 8, FAULT 21, INVAL 28, SPIPE 70.
    assert_eq!(errnos, [0, 0, 8, 21, 0, 0, 0, 28, 0, 21, 8, 70, 0, 8, 0, 8], "errno of each call");
    assert_eq!((word(16), word(17)), (0, 4), "no environment; 4 bytes written");
    let now = u64::from_le_bytes(exec.output[72..80].try_into().expect("8 bytes"));
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64;
    assert!(now > 0 && now <= wall && wall - now < 60_000_000_000, "the wall clock: {now} vs {wall}");
    assert_ne!(exec.output[80..96], [0u8; 16], "random bytes were written");
    assert_eq!(exec.stdout, b"hi!\n");
    assert_eq!(exec.stderr, b"hi!\n");
}

/// Output past the stdio cap is an I/O error to the guest, not a trap; and
/// `proc_exit` ends the execution as a crash that names the status.
#[tokio::test]
async fn stdio_is_capped_and_proc_exit_ends_the_run() {
    let wat = |body: &str| {
        format!(
            r#"(module
              (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "9.9.9")
              (func (export "avap_abi_version") (result i32) i32.const 1)
              (func (export "avap_guest_version") (result i64) i64.const 5)
              (func (export "avap_alloc") (param i32) (result i32) i32.const 4096)
              (func (export "avap_run") (param i32 i32) (result i64) {body}))"#
        )
    };
    // 1000 bytes a write, 100 writes, into a 4 KiB cap: the fifth fails.
    let body = r#"
        (i32.store (i32.const 64) (i32.const 1024)) (i32.store (i32.const 68) (i32.const 1000))
        (local.set 0 (i32.const 0))
        (block (loop
          (br_if 1 (i32.ne (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 80)) (i32.const 0)))
          (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br_if 0 (i32.lt_u (local.get 0) (i32.const 100)))))
        (i32.store (i32.const 200) (local.get 0))
        i64.const 0xc800000004"#;
    let limits = Limits { max_stdio_bytes: 4096, ..limits() };
    let exec = run(&wat(body), &limits).await.expect("a full pipe is not a trap");
    assert_eq!(exec.output, 4u32.to_le_bytes(), "four writes fitted");
    assert_eq!(exec.stdout.len(), 4000);
    let err = run(&wat("(call $proc_exit (i32.const 3)) i64.const 0"), &limits).await.expect_err("exited");
    assert!(matches!(&err, SandboxError::GuestCrash(m) if m.contains("status 3")), "{err:?}");
}
