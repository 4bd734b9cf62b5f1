//! `avap` driven as a user drives it: the real binary, real files, exit
//! codes and output; `serve` and `dev` through real HTTP on loopback, with
//! the real guest in wasmtime.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

mod lsp;

const BIN: &str = env!("CARGO_BIN_EXE_avap");
const SECRET: &str = "a-test-secret-of-more-than-32-bytes-0123456789";

fn avap() -> Command {
    let mut cmd = Command::new(BIN);
    // The host's settings come from AVAP_* variables; none leak in from the
    // machine running the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("AVAP_") || k == "API_KEY" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.timeout(Duration::from_secs(120));
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["run", "check", "test", "fmt", "pack", "verify", "precompile", "serve", "dev", "lsp"] {
        let assert = avap().args([sub, "--help"]).assert().success();
        let text = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
        assert!(text.contains("Usage:"), "{sub} --help: {text}");
    }
    avap().assert().failure().code(2).stderr(predicate::str::contains("Usage:"));
}

#[test]
fn run_prints_the_response_and_the_logs() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "hello.avap", "addParam(name, who)\nmsg = `Hello ${who}`\naddResult(msg)\n");
    let output = avap().arg("run").arg(&script).args(["--param", "name=Ann"]).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    // Not a terminal: compact, one line.
    assert_eq!(output.stdout.iter().filter(|b| **b == b'\n').count(), 1);
    let response = stdout_json(&output);
    assert_eq!(response["result"], json!({"msg": "Hello Ann"}));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 1: addParam ok"), "{stderr}");
    assert!(stderr.contains("line 3: addResult ok"), "{stderr}");

    // --pretty indents; -q drops the log.
    let output = avap().arg("run").arg(&script).args(["--pretty", "-q"]).output().expect("run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("\n  \"success\": true"));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn run_takes_variables_a_body_a_query_and_stdin() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(
        dir.path(),
        "req.avap",
        "addParam(name, n)\naddParam(age, a)\naddParam(flag, f)\nt = total + 1\naddResult(n)\naddResult(a)\naddResult(f)\naddResult(t)\n",
    );
    let body = write(dir.path(), "body.json", r#"{"name": "from-body", "flag": true}"#);
    let output = avap()
        .arg("run")
        .arg(&script)
        .arg("--body")
        .arg(&body)
        .args(["--query", "name=from-query&age=42", "--var", "total=41"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_json(&output)["result"], json!({"n": "from-query", "a": 42, "f": true, "t": 42}));

    avap()
        .args(["run", "-", "-q"])
        .write_stdin("addVar(x, 7)\naddResult(x)\n")
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""result":{"x":7}"#));

    avap()
        .arg("run")
        .arg(&script)
        .args(["--var", "total=not json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--var total"));
}

#[test]
fn a_failing_script_exits_1_with_the_hosts_answer() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "div.avap", "a = 1\nb = a / 0\naddResult(b)\n");
    let output = avap().arg("run").arg(&script).output().expect("run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let response = stdout_json(&output);
    assert_eq!(response["success"], false);
    assert_eq!(response["kind"], "runtime_error");
    assert_eq!(response["line"], 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("runtime_error (HTTP 400)"), "{output:?}");

    let bad = write(dir.path(), "bad.avap", "if(a, 1, \"==\")\n");
    let output = avap().arg("run").arg(&bad).output().expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout_json(&output)["kind"], "syntax_error");
}

#[test]
fn capabilities_are_denied_unless_granted() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(
        dir.path(),
        "db.avap",
        "ormDirect(\"CREATE TABLE t (n INTEGER)\", r)\normDirect(\"INSERT INTO t VALUES (5)\", r)\normDirect(\"SELECT n FROM t\", rows)\naddResult(rows)\n",
    );
    let output = avap().arg("run").arg(&script).output().expect("run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let denied = stdout_json(&output);
    assert_eq!(denied["success"], false);
    assert!(denied["error"].as_str().unwrap_or_default().contains("db"), "{denied}");
    // The host's words say what is missing; the tool says which flag grants it.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hint:") && stderr.contains("--db URL"), "{stderr}");
    assert!(!stderr.contains("--http"), "only the capability the script asked for: {stderr}");
    // Also when the script catches the error and succeeds.
    let caught = write(dir.path(), "caught.avap", "try()\normDirect(\"SELECT 1\", r)\nexception(e)\nend()\n");
    let output = avap().arg("run").arg(&caught).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--db URL"), "{output:?}");

    let output = avap().arg("run").arg(&script).args(["--db", "sqlite::memory:"]).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_json(&output)["result"]["rows"], json!([{"n": 5}]));
}

/// A one-shot HTTP service on loopback answering `body` as JSON.
fn upstream(body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return String::new() };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut request = vec![0u8; 4096];
        let n = stream.read(&mut request).unwrap_or(0);
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
        String::from_utf8_lossy(&request[..n]).to_string()
    });
    (addr.to_string(), handle)
}

#[test]
fn http_reaches_only_what_is_allowed() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "get.avap", "RequestGet(`http://${svc}/x`, , , data)\naddResult(data)\n");
    let (authority, served) = upstream(r#"{"hello": "world"}"#);
    let var = format!("svc=\"{authority}\"");
    // Loopback is not reachable with --http alone (nor without it).
    for grant in [&[][..], &["--http"][..]] {
        let output = avap().arg("run").arg(&script).args(["--var", &var]).args(grant).output().expect("run");
        assert_eq!(output.status.code(), Some(1), "{grant:?}: {output:?}");
    }
    // Not granted at all: the tool names the flags that grant it.
    let output = avap().arg("run").arg(&script).args(["--var", &var]).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hint:") && stderr.contains("--http-allow HOST:PORT"), "{stderr}");
    assert!(!stderr.contains("--db"), "{stderr}");
    let output =
        avap().arg("run").arg(&script).args(["--var", &var, "--http-allow", &authority]).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_json(&output)["result"]["data"], json!({"hello": "world"}));
    assert!(served.join().expect("upstream").starts_with("GET /x HTTP/1.1"));
}

#[test]
fn db_on_the_real_postgresql() {
    let url = std::env::var("AVAP_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "pg.avap", "ormDirect(\"SELECT 40 + 2 AS n\", rows)\naddResult(rows)\n");
    // The administrator role is refused unless the flag says otherwise.
    let output = avap().arg("run").arg(&script).args(["--db", &url]).output().expect("run");
    assert_ne!(output.status.code(), Some(0), "{output:?}");
    let output =
        avap().arg("run").arg(&script).args(["--db", &url, "--db-allow-privileged-role"]).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_json(&output)["result"]["rows"], json!([{"n": 42}]));
}

#[test]
fn run_loads_a_catalog_folder_like_the_brain() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "catalog/greet.avap", "function greet(who) {\n    return `hi ${who}`\n}\n");
    let script = write(dir.path(), "s.avap", "m = greet(\"Bo\")\naddResult(m)\n");
    let output = avap().arg("run").arg(&script).arg("--catalog").arg(dir.path().join("catalog")).output().expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_json(&output)["result"], json!({"m": "hi Bo"}));

    // Without it the command does not exist.
    let output = avap().arg("run").arg(&script).output().expect("run");
    assert_eq!(output.status.code(), Some(1));

    // A folder with a broken command is refused whole, naming the file.
    write(dir.path(), "catalog/broken.avap", "function other(x) {\n}\n");
    avap()
        .arg("run")
        .arg(&script)
        .arg("--catalog")
        .arg(dir.path().join("catalog"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.avap"));
}

#[test]
fn check_prints_rustc_style_diagnostics() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = write(dir.path(), "good.avap", "addVar(a, 1)\naddResult(a)\n");
    let bad = write(dir.path(), "bad.avap", "addVar(a, 1)\nif(a, 1, \"==\")\n    addResult(a)\n");
    avap().arg("check").arg(&good).assert().success().stdout("0 errors, 0 warnings in 1 file\n");

    let output = avap().arg("check").arg(&good).arg(&bad).output().expect("check");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("{}:2:1: error: ", bad.display())), "{text}");
    assert!(text.contains("2 | if(a, 1, \"==\")\n  | ^^"), "{text}");
    assert!(text.ends_with("1 error, 0 warnings in 2 files\n"), "{text}");

    let output = avap().arg("check").arg(&bad).args(["--format", "json"]).output().expect("check");
    assert_eq!(output.status.code(), Some(1));
    let diags = stdout_json(&output);
    assert_eq!(diags[0]["line"], 2);
    assert_eq!(diags[0]["column"], 1);
    assert_eq!(diags[0]["severity"], "error");

    // A call the host would not find is a warning; the catalog knows it.
    let warn = write(dir.path(), "warn.avap", "greet(x)\n");
    avap().arg("check").arg(&warn).assert().success().stdout(predicate::str::contains("1:1: warning: 'greet'"));
    avap().arg("check").arg(&warn).arg("--deny-warnings").assert().code(1);
    write(dir.path(), "cat/greet.avap", "function greet(who) {\n    return who\n}\n");
    avap()
        .arg("check")
        .arg(&warn)
        .arg("--catalog")
        .arg(dir.path().join("cat"))
        .assert()
        .success()
        .stdout("0 errors, 0 warnings in 1 file\n");

    // `check` finds an error exactly in the repository's case scripts the
    // host refuses with `syntax_error`.
    let mut refused = 0;
    for group in ["language", "capability"] {
        for entry in std::fs::read_dir(repo().join("tests/cases").join(group)).expect("cases") {
            let dir = entry.expect("entry").path();
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected"))
                    .expect("json");
            let syntax = match expected["body"]["kind"].as_str() {
                Some(kind) => kind == "syntax_error",
                // The file does not say: ask the host.
                None if expected["status"] == 400 => {
                    let output = avap().args(["run", "-q"]).arg(dir.join("script.avap")).output().expect("run");
                    stdout_json(&output)["kind"] == "syntax_error"
                }
                None => false,
            };
            refused += usize::from(syntax);
            let output = avap().arg("check").arg(dir.join("script.avap")).output().expect("check");
            assert_eq!(output.status.code(), Some(if syntax { 1 } else { 0 }), "{}: {output:?}", dir.display());
        }
    }
    assert!(refused >= 4, "the cases include scripts with syntax errors");
}

#[test]
fn check_with_a_broken_catalog_exits_2() {
    // The command cannot do its job: a catalog folder with problems is a
    // usage error (exit 2, as `run --catalog` says), never "0 errors".
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "s.avap", "m = greet(\"Bo\")\naddResult(m)\n");
    write(dir.path(), "cat/greet.avap", "function greet(who) {\n    return who\n}\n");
    write(dir.path(), "cat/broken.avap", "function other(x) {\n}\n");
    let output = avap().arg("check").arg(&script).arg("--catalog").arg(dir.path().join("cat")).output().expect("check");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.avap"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("0 errors"), "{output:?}");
    for format in ["text", "json"] {
        avap()
            .arg("check")
            .arg(&script)
            .args(["--format", format, "--catalog"])
            .arg(dir.path().join("cat"))
            .assert()
            .code(2);
    }
    // A folder that cannot be read at all: the same.
    avap().arg("check").arg(&script).arg("--catalog").arg(dir.path().join("missing")).assert().code(2);
    // Without the broken file the same check passes.
    std::fs::remove_file(dir.path().join("cat/broken.avap")).expect("rm");
    avap()
        .arg("check")
        .arg(&script)
        .arg("--catalog")
        .arg(dir.path().join("cat"))
        .assert()
        .success()
        .stdout("0 errors, 0 warnings in 1 file\n");
}

#[test]
fn test_runs_case_folders() {
    let root = repo().join("tests/cases/language");
    let count =
        std::fs::read_dir(&root).expect("cases").filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir())).count();
    let output = avap().arg("test").arg(&root).output().expect("test");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.ends_with(&format!("\n{count} passed, 0 failed\n")), "{text}");
    assert!(text.contains("ok     cmd_replace\n"), "{text}");

    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "good/script.avap", "addVar(a, 1)\naddResult(a)\n");
    write(dir.path(), "good/expected.json", r#"{"status": 200, "body": {"success": true, "result": {"a": 1}}}"#);
    write(dir.path(), "wrong/script.avap", "addVar(a, 2)\naddResult(a)\n");
    write(dir.path(), "wrong/expected.json", r#"{"status": 200, "body": {"success": true, "result": {"a": 1}}}"#);
    let output = avap().arg("test").arg(dir.path()).output().expect("test");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ok     good\n"), "{text}");
    assert!(text.contains("FAILED wrong\n"), "{text}");
    assert!(text.contains("-    \"a\": 1") && text.contains("+    \"a\": 2"), "a diff of expected and actual: {text}");
    assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");

    avap()
        .arg("test")
        .arg(dir.path())
        .args(["--filter", "good"])
        .assert()
        .success()
        .stdout(predicate::str::ends_with("1 passed, 0 failed\n"));

    // A case that needs the database, run without it: the failure says
    // which flag grants it.
    write(dir.path(), "db/script.avap", "ormDirect(\"SELECT 1 AS n\", rows)\naddResult(rows)\n");
    write(
        dir.path(),
        "db/expected.json",
        r#"{"status": 200, "body": {"success": true, "result": {"rows": [{"n": 1}]}}}"#,
    );
    let output = avap().arg("test").arg(dir.path()).args(["--filter", "db"]).output().expect("test");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FAILED db\n") && text.contains("hint:") && text.contains("--db URL"), "{text}");
    avap()
        .arg("test")
        .arg(dir.path())
        .args(["--filter", "db", "--db", "sqlite::memory:"])
        .assert()
        .success()
        .stdout(predicate::str::ends_with("1 passed, 0 failed\n"));
}

#[test]
fn fmt_rewrites_and_checks() {
    let dir = tempfile::tempdir().expect("tmp");
    let messy = "addVar(a,1)\nif(a,1,\"==\")\naddResult(a)\nend()\n";
    let file = write(dir.path(), "messy.avap", messy);
    let output = avap().arg("fmt").arg("--check").arg(&file).output().expect("fmt");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("would reformat"), "{output:?}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), messy, "--check changes nothing");

    avap().arg("fmt").arg(&file).assert().success().stdout(predicate::str::contains("formatted"));
    let formatted = std::fs::read_to_string(&file).expect("read");
    assert_eq!(formatted, "addVar(a, 1)\nif(a, 1, \"==\")\n    addResult(a)\nend()\n");
    avap().arg("fmt").arg("--check").arg(&file).assert().success().stdout("");

    avap().args(["fmt", "-"]).write_stdin("  addVar(x,1)\n").assert().success().stdout("addVar(x, 1)\n");
    let bad = write(dir.path(), "bad.avap", "if(a, 1, \"==\")\n");
    avap().arg("fmt").arg(&bad).assert().code(1).stderr(predicate::str::contains("syntax errors"));
}

#[test]
fn pack_and_verify_offline() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = write(dir.path(), "s.avap", "addVar(a, 40)\nb = a + 2\naddResult(b)\n");
    avap().arg("pack").arg(&script).args(["--key-env", "PACK_SECRET"]).env("PACK_SECRET", SECRET).assert().success();
    let pkg = dir.path().join("s.pkg");
    let bytes = std::fs::read(&pkg).expect("package");
    assert!(bytes.starts_with(b"AVAP"));

    avap()
        .arg("verify")
        .arg(&pkg)
        .args(["--key-env", "PACK_SECRET", "--print"])
        .env("PACK_SECRET", SECRET)
        .assert()
        .success()
        .stdout("addVar(a, 40)\nb = a + 2\naddResult(b)\n")
        .stderr(predicate::str::contains("signature ok"));

    // Another secret, one altered byte: refused.
    let other = format!("{SECRET}-other");
    avap()
        .arg("verify")
        .arg(&pkg)
        .args(["--key-env", "K"])
        .env("K", &other)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refused"));
    let mut altered = bytes.clone();
    if let Some(last) = altered.last_mut() {
        *last ^= 1;
    }
    let altered_path = write(dir.path(), "altered.pkg", "");
    std::fs::write(&altered_path, &altered).expect("write");
    avap().arg("verify").arg(&altered_path).args(["--key-env", "K"]).env("K", SECRET).assert().code(1);
    // The original scheme: signed with the secret itself. A host in that
    // scheme takes both kinds; this project's scheme only its own.
    let original = dir.path().join("orig.pkg");
    avap()
        .arg("pack")
        .arg(&script)
        .args(["--key-env", "K", "--scheme", "original", "-o"])
        .arg(&original)
        .env("K", SECRET)
        .assert()
        .success();
    assert_ne!(std::fs::read(&original).expect("package"), bytes);
    for (package, scheme, code) in
        [(&original, "separated", 1), (&original, "original", 0), (&pkg, "original", 0), (&pkg, "separated", 0)]
    {
        avap()
            .arg("verify")
            .arg(package)
            .args(["--key-env", "K", "--scheme", scheme])
            .env("K", SECRET)
            .assert()
            .code(code);
    }
    avap().args(["pack", "-", "--key-env", "K"]).env("K", SECRET).write_stdin("addVar(a, 1)\n").assert().code(2);

    // Weak secrets and scripts with errors are not packed.
    avap()
        .arg("pack")
        .arg(&script)
        .args(["--key-env", "K"])
        .env("K", "short")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fewer than 32"));
    avap().arg("pack").arg(&script).args(["--key-env", "UNSET_FOR_SURE"]).assert().code(2);
    let bad = write(dir.path(), "bad.avap", "if(a, 1, \"==\")\n");
    avap().arg("pack").arg(&bad).args(["--key-env", "K"]).env("K", SECRET).assert().code(1);

    // `-o -`: the base64 a host's execute takes, and what a real host
    // started by `avap serve` with the same secret runs.
    let output =
        avap().arg("pack").arg(&script).args(["--key-env", "K", "-o", "-"]).env("K", SECRET).output().expect("pack");
    assert!(output.status.success());
    let b64 = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let server = Server::start(&["serve", "--standalone", "--bind", "127.0.0.1"], &[("AVAP_INTERNAL_KEY", SECRET)]);
    let (status, body) = server.post("/api/v1/execute", &json!({"package": b64}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"b": 42}));
    let (status, body) = server.post("/api/v1/execute", &json!({"package": base64_of(&altered)}));
    assert_eq!((status, body["kind"].as_str()), (403, Some("integrity")), "{body}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn dev_serves_a_folder_and_reloads_on_save() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write(dir.path(), "hello.avap", "addParam(name, who)\nmsg = `Hello ${who}`\naddResult(msg)\n");
    let server = Server::start(&["dev", &dir.path().display().to_string()], &[]);
    let (status, body) = server.post("/hello?name=Ann", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"msg": "Hello Ann"}));
    let (status, body) = server.post("/hello", &json!({"name": "Bo"}));
    assert_eq!((status, &body["result"]), (200, &json!({"msg": "Hello Bo"})), "{body}");

    std::fs::write(&file, "addParam(name, who)\nmsg = `Bye ${who}`\naddResult(msg)\n").expect("save");
    let (_, body) = server.post("/hello", &json!({"name": "Bo"}));
    assert_eq!(body["result"], json!({"msg": "Bye Bo"}), "the saved file is live");
    server.wait_for_output("reloaded hello.avap");

    let (status, body) = server.post("/missing", &json!({}));
    assert_eq!((status, body["kind"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _) = server.post("/..%2Fhello", &json!({}));
    assert_eq!(status, 404);
    let (status, body) = server.post("/hello", &json!([1]));
    assert_eq!((status, body["kind"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = server.get("/");
    assert_eq!((status, body), (200, json!({"scripts": ["/hello"]})));

    // What a page in a browser could send: refused, with the host's kinds.
    let port = server.base.rsplit(':').next().unwrap_or_default().to_string();
    let cross = server.post_with("/hello", &json!({}), &[("origin", "http://evil.example")]);
    assert_eq!((cross.0, cross.1["kind"].as_str()), (403, Some("cross_origin")), "{}", cross.1);
    let rebound = server.post_with("/hello", &json!({}), &[("host", &format!("evil.example:{port}"))]);
    assert_eq!((rebound.0, rebound.1["kind"].as_str()), (421, Some("misdirected_host")), "{}", rebound.1);
    let same = server.post_with("/hello", &json!({"name": "Cy"}), &[("origin", &format!("http://127.0.0.1:{port}"))]);
    assert_eq!(same.0, 200, "{}", same.1);

    // A script error is the host's answer, status and kind included.
    write(dir.path(), "div.avap", "x = 1 / 0\n");
    let (status, body) = server.post("/div", &json!({}));
    assert_eq!((status, body["kind"].as_str()), (400, Some("runtime_error")), "{body}");

    // A capability this server was not started with: the terminal says
    // which flag grants it.
    write(dir.path(), "db.avap", "ormDirect(\"SELECT 1\", r)\n");
    let (status, body) = server.post("/db", &json!({}));
    assert_eq!(status, 400, "{body}");
    server.wait_for_output("--db URL");
}

/// A request: method, path and query, headers.
type Probe<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// The issue's attack: a page on another site makes the developer's browser
/// run a script (an `<img>` or a link is a GET with no `Origin`). Every
/// request marked cross-site or same-site by the browser is refused before
/// anything runs, and the script's side effect (a row in the SQLite file)
/// does not happen.
#[test]
fn dev_runs_no_script_for_another_site() {
    let dir = tempfile::tempdir().expect("tmp");
    let scripts = dir.path().join("scripts");
    write(
        &scripts,
        "write.avap",
        "addParam(v, v)\normDirect(\"CREATE TABLE IF NOT EXISTS t (v TEXT)\", r)\normDirect(`INSERT INTO t VALUES ('${v}')`, r)\naddResult(v)\n",
    );
    write(&scripts, "rows.avap", "ormDirect(\"SELECT v FROM t ORDER BY v\", rows)\naddResult(rows)\n");
    let db = format!("sqlite:{}", dir.path().join("dev.db").display());
    let server = Server::start(&["dev", &scripts.display().to_string(), "--db", &db], &[]);
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

    // What the developer sends: curl (no fetch metadata), the address bar
    // (`none`), a page of this server's own origin (`same-origin`).
    let allowed: [Probe; 4] = [
        ("POST", "/write?v=curl", &[]),
        ("GET", "/write?v=bar", &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("user-agent", FIREFOX)]),
        ("GET", "/write?v=own", &[("sec-fetch-site", "same-origin"), ("user-agent", FIREFOX)]),
        ("GET", "/write?v=tool", &[("user-agent", "curl/8.5.0")]),
    ];
    for (method, path, headers) in allowed {
        let (status, body) = server.send(method, path, headers);
        assert_eq!(status, 200, "{method} {path} {headers:?}: {body}");
    }

    // What another site's page makes the browser send.
    let refused: [Probe; 6] = [
        // <img src="http://127.0.0.1:PORT/write?v=img">
        (
            "GET",
            "/write?v=img",
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
                ("user-agent", FIREFOX),
            ],
        ),
        // a link followed from another site
        (
            "GET",
            "/write?v=link",
            &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate"), ("user-agent", FIREFOX)],
        ),
        // a page on another port of localhost is the same site, not the same origin
        ("GET", "/write?v=port", &[("sec-fetch-site", "same-site"), ("user-agent", FIREFOX)]),
        // a form posted from another site, without an Origin
        ("POST", "/write?v=form", &[("sec-fetch-site", "cross-site")]),
        // a value the Fetch Metadata standard does not have
        ("GET", "/write?v=odd", &[("sec-fetch-site", "elsewhere")]),
        // a browser too old to send fetch metadata: its GET cannot be told from an <img>
        (
            "GET",
            "/write?v=old",
            &[("user-agent", "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/15.6 Safari/605.1.15")],
        ),
    ];
    for (method, path, headers) in refused {
        let (status, body) = server.send(method, path, headers);
        assert_eq!((status, body["kind"].as_str()), (403, Some("cross_origin")), "{method} {path} {headers:?}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Sec-Fetch-Site"), "the reason names the header: {body}");
    }
    // The index runs no script, but is guarded the same way.
    let (status, _) = server.send("GET", "/", &[("sec-fetch-site", "cross-site")]);
    assert_eq!(status, 403);

    // Only the developer's own requests wrote rows.
    let (status, body) = server.send("POST", "/rows", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["rows"], json!([{"v": "bar"}, {"v": "curl"}, {"v": "own"}, {"v": "tool"}]));
}

/// `avap serve` or `avap dev` on a free loopback port, killed on drop.
struct Server {
    child: Child,
    base: String,
    output: std::sync::mpsc::Receiver<String>,
    client: reqwest::blocking::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args).args(["--port", &port.to_string()]);
        for (k, _) in std::env::vars() {
            if k.starts_with("AVAP_") || k == "API_KEY" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied()).env("AVAP_LOG_FORMAT", "text").stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn avap");
        let (tx, output) = std::sync::mpsc::channel();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            output,
            client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if server.client.get(format!("{}/", server.base)).send().is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let lines: Vec<String> = server.output.try_iter().collect();
        panic!("avap {args:?} did not listen on {port}: {}", lines.join("\n"));
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.base)).json(body).send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// `method path` with `headers` and no body.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Waits for a line of the server's output that contains `text`.
    fn wait_for_output(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.output.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no output line with {text:?}; saw:\n{}", seen.join("\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `avap precompile` writes the artifact and its signature beside the
/// module, and a host engine (this test's, in another binary) takes it:
/// the statement verifies with the release key for the module, the form
/// hosts compile and this engine; the module then runs.
#[test]
fn precompile_writes_an_artifact_a_host_takes() {
    use avap_host::runtime::artifacts::{SignedArtifact, open_signed};
    use avap_host::runtime::{Limits, SandboxEngine, compile_form};
    use avap_wire::guest_sig::{ArtifactSignatureFile, GuestSigningKey};

    let dir = tempfile::tempdir().expect("tmp");
    let release = GuestSigningKey::generate().expect("key");
    let key = write(dir.path(), "release.key", &format!("{}\n", release.to_hex()));
    let module = dir.path().join("guest-vm.wasm");
    std::fs::write(&module, avap_host::GUEST_WASM).expect("write");

    let output = avap().arg("precompile").arg("--key").arg(&key).arg(&module).output().expect("precompile");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&release.public().id()) && stderr.contains("guest-vm.cwasm"), "{stderr}");
    let artifact = std::fs::read(dir.path().join("guest-vm.cwasm")).expect("the artifact");
    let sig = std::fs::read_to_string(dir.path().join("guest-vm.cwasm.sig")).expect("its signature");
    let file: ArtifactSignatureFile = serde_json::from_str(&sig).expect("a signature file");
    assert_eq!(file.public, release.public().to_string());
    let claim = file.check(&artifact, avap_host::GUEST_WASM).expect("what the brain checks");

    let engine = SandboxEngine::new(&Limits { max_concurrency: 1, ..Limits::default() }).expect("engine");
    assert_eq!(file.engine, engine.id().iter().map(|b| format!("{b:02x}")).collect::<String>(), "this engine's");
    let offered = SignedArtifact { bytes: artifact.into(), claim: Ok(claim) };
    let (compiled, _) = compile_form(avap_host::GUEST_WASM);
    let (loaded, signed_by) =
        open_signed(engine.engine(), &engine.id(), &offered, avap_host::GUEST_WASM, &compiled, &[release.public()])
            .expect("a host takes it");
    assert_eq!(signed_by, release.public().id());
    assert!(loaded.get_export("avap_run").is_some());

    // --out, and --dev: the published development key, said loudly.
    let out = dir.path().join("elsewhere.cwasm");
    let output = avap().args(["precompile", "--dev", "--out"]).arg(&out).arg(&module).output().expect("precompile");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("development key"));
    let file: ArtifactSignatureFile =
        serde_json::from_slice(&std::fs::read(dir.path().join("elsewhere.cwasm.sig")).expect("sig")).expect("json");
    assert_eq!(file.key, avap_wire::guest_sig::dev_signing_key().public().id());

    // No key; not a module; a module off the ABI: exit 2, nothing written.
    avap().arg("precompile").arg(&module).assert().failure().code(2).stderr(predicate::str::contains("--key"));
    let text = write(dir.path(), "notes.wasm", "not wasm");
    avap()
        .arg("precompile")
        .arg("--dev")
        .arg(&text)
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("not a wasm binary"));
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x01\0\0\0").expect("write");
    avap()
        .arg("precompile")
        .arg("--dev")
        .arg(&empty)
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("cannot be loaded as a guest"));
    assert!(!dir.path().join("empty.cwasm").exists());
}
