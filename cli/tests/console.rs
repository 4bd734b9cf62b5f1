//! The console of `avap dev` (cli/src/console/), over real HTTP against the
//! real binary: its page and assets, its API (check, format, save, run,
//! cancel, commands, events) compared with what the command line gives,
//! `/openapi.json`, and the cross-site and DNS-rebinding guards on every
//! one of its routes. The page itself is driven in a browser by
//! cli/console/test/ (CI step "console in a browser").

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_avap");
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// `avap dev DIR ARGS` on a free loopback port, killed on drop.
struct Dev {
    child: Child,
    port: u16,
    output: mpsc::Receiver<String>,
    client: Client,
}

/// One answer: status, headers, body as JSON (or `Value::String` of the
/// text when it is not JSON).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn kind(&self) -> Option<&str> {
        self.body["kind"].as_str()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

fn answer(response: Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, headers, body }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Dev {
    fn start(dir: &Path, args: &[&str]) -> Dev {
        Dev::start_on(dir, "127.0.0.1", args)
    }

    fn start_on(dir: &Path, bind: &str, args: &[&str]) -> Dev {
        let port = free_port();
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("dev").arg(dir).args(["--bind", bind, "--port", &port.to_string()]).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AVAP_") || k == "API_KEY" {
                cmd.env_remove(k);
            }
        }
        cmd.env("AVAP_LOG_FORMAT", "text").stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn avap dev");
        let (tx, output) = mpsc::channel();
        let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let client = Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let dev = Dev { child, port, output, client };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if dev.client.get(dev.url("/")).send().is_ok() {
                return dev;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let lines: Vec<String> = dev.output.try_iter().collect();
        panic!("avap dev did not listen on {port}: {}", lines.join("\n"));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `method path` as the page sends it: same origin, JSON.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let origin = self.url("");
        let headers = [("sec-fetch-site", "same-origin"), ("user-agent", FIREFOX), ("origin", origin.as_str())];
        self.send(method, path, body.map(|b| ("application/json", b.to_string())), &headers)
    }

    fn send(&self, method: &str, path: &str, body: Option<(&str, String)>, headers: &[(&str, &str)]) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some((kind, body)) = body {
            request = request.header("content-type", kind).body(body);
        }
        answer(request.send().expect("request"))
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

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `avap ARGS` with `stdin`: stdout.
fn avap(args: &[&str], stdin: &str) -> String {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn avap");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("avap");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_page_and_its_assets_come_from_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "hello.avap", "addParam(name, who)\naddResult(who)\n");
    let dev = Dev::start(dir.path(), &[]);
    dev.wait_for_output(&format!("console: open http://127.0.0.1:{}/", dev.port));

    // A browser asking for / gets the page; a tool still gets the JSON list.
    let page = dev.send(
        "GET",
        "/",
        None,
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8"), ("sec-fetch-site", "none"), ("user-agent", FIREFOX)],
    );
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"), "{:?}", page.headers);
    let html = page.body.as_str().unwrap_or_default();
    assert!(html.contains("/api/console/assets/console.js") && html.contains("id=\"source\""), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");
    // Its own headers: no framing by another page, this origin's scripts only.
    let csp = page.header("content-security-policy");
    for rule in ["frame-ancestors 'none'", "script-src 'self'", "connect-src 'self'", "default-src 'none'"] {
        assert!(csp.contains(rule), "{rule} in {csp}");
    }
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("vary"), "accept");
    let tool = dev.send("GET", "/", None, &[]);
    assert_eq!(tool.body, json!({"scripts": ["/hello"]}));
    assert_eq!(tool.header("vary"), "accept");

    for (asset, kind) in [
        ("console.js", "text/javascript"),
        ("highlight.js", "text/javascript"),
        ("console.css", "text/css"),
        ("avap.tmLanguage.json", "application/json"),
    ] {
        let got = dev.call("GET", &format!("/api/console/assets/{asset}"), None);
        assert_eq!(got.status, 200, "{asset}");
        assert!(got.header("content-type").starts_with(kind), "{asset}: {:?}", got.headers);
        assert!(got.header("content-security-policy").contains("frame-ancestors 'none'"), "{asset}");
    }
    // The highlighter's rules are the editors' grammar, byte for byte.
    let grammar = dev.client.get(dev.url("/api/console/assets/avap.tmLanguage.json")).send().expect("grammar");
    let served = grammar.text().expect("text");
    let file = std::fs::read_to_string(repo().join("editors/vscode/syntaxes/avap.tmLanguage.json")).expect("grammar");
    assert_eq!(served, file);
    let missing = dev.call("GET", "/api/console/assets/..%2Fmain.rs", None);
    assert_eq!((missing.status, missing.kind()), (404, Some("not_found")));
}

#[test]
fn check_and_format_give_what_the_command_line_gives() {
    let dir = tempfile::tempdir().expect("tmp");
    let dev = Dev::start(dir.path(), &[]);
    let broken = "addVar(a, 1)\nif(a, 1, \"==\")\n  frobnicate(a)\n";
    let checked = dev.call("POST", "/api/console/check", Some(&json!({"source": broken})));
    assert_eq!(checked.status, 200, "{}", checked.body);
    // `avap check --format json` on the same text: the same diagnostics.
    let cli: Value = serde_json::from_str(&avap(&["check", "--format", "json", "-"], broken)).expect("JSON");
    let cli: Vec<Value> = cli
        .as_array()
        .expect("array")
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().expect("object").remove("file");
            d
        })
        .collect();
    assert_eq!(checked.body["diagnostics"], Value::Array(cli));
    assert_eq!(checked.body["diagnostics"][0]["line"], 2, "{}", checked.body);
    assert_eq!(checked.body["diagnostics"][0]["column"], 1);
    assert_eq!(checked.body["diagnostics"][0]["severity"], "error");
    let fine = dev.call("POST", "/api/console/check", Some(&json!({"source": "addVar(a, 1)\n"})));
    assert_eq!(fine.body, json!({"diagnostics": []}));

    let messy = "addVar(a,1)\nif(a,1,\"==\")\naddResult(a)\nend()\n";
    let formatted = dev.call("POST", "/api/console/format", Some(&json!({"source": messy})));
    assert_eq!(formatted.status, 200, "{}", formatted.body);
    assert_eq!(formatted.body["formatted"], avap(&["fmt", "-"], messy));
    assert_eq!(formatted.body["changed"], true);
    let refused = dev.call("POST", "/api/console/format", Some(&json!({"source": broken})));
    assert_eq!((refused.status, refused.kind()), (422, Some("syntax_error")), "{}", refused.body);
    assert_eq!(refused.body["diagnostics"][0]["line"], 2);

    // Only JSON, sent as JSON.
    let form = dev.send("POST", "/api/console/check", Some(("text/plain", "{\"source\": \"x\"}".into())), &[]);
    assert_eq!((form.status, form.kind()), (415, Some("bad_request")), "{}", form.body);
    let bad = dev.send("POST", "/api/console/check", Some(("application/json", "[1]".into())), &[]);
    assert_eq!((bad.status, bad.kind()), (400, Some("bad_request")), "{}", bad.body);
}

#[test]
fn scripts_are_read_and_saved_with_their_versions() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "hello.avap", "addResult(a)\n");
    write(dir.path(), "not a name.avap", "addResult(a)\n");
    let dev = Dev::start(dir.path(), &[]);
    let list = dev.call("GET", "/api/console/scripts", None);
    assert_eq!(list.body["scripts"], json!([{"name": "hello", "path": "/hello", "bytes": 13}]));
    let hello = dev.call("GET", "/api/console/scripts/hello", None);
    assert_eq!(hello.body["source"], "addResult(a)\n");
    let version = hello.body["version"].as_str().expect("version").to_string();

    // Saved over the version read: written, with the new version.
    let saved = dev.call(
        "PUT",
        "/api/console/scripts/hello",
        Some(&json!({"source": "addVar(a, 2)\naddResult(a)\n", "version": version})),
    );
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.avap")).expect("read"), "addVar(a, 2)\naddResult(a)\n");
    let new_version = saved.body["version"].as_str().expect("version").to_string();
    assert_ne!(new_version, version);
    dev.wait_for_output("console saved hello.avap");

    // Saved over a version that is no longer on disk: refused, nothing written.
    write(dir.path(), "hello.avap", "addVar(a, 3)\naddResult(a)\n");
    let stale = dev.call(
        "PUT",
        "/api/console/scripts/hello",
        Some(&json!({"source": "addVar(a, 4)\n", "version": new_version})),
    );
    assert_eq!((stale.status, stale.kind()), (409, Some("conflict")), "{}", stale.body);
    assert_ne!(stale.body["version"], json!(new_version));
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.avap")).expect("read"), "addVar(a, 3)\naddResult(a)\n");

    // A new script: created when it does not exist, refused when it does.
    let created =
        dev.call("PUT", "/api/console/scripts/fresh", Some(&json!({"source": "addResult(a)\n", "version": null})));
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(dir.path().join("fresh.avap").is_file());
    let again = dev.call("PUT", "/api/console/scripts/fresh", Some(&json!({"source": "x = 1\n", "version": null})));
    assert_eq!((again.status, again.kind()), (409, Some("conflict")));

    // Nothing outside the folder, nothing but `name.avap`.
    for name in ["..%2Fescape", "a.b", "%2Ftmp%2Fx"] {
        let escape =
            dev.call("PUT", &format!("/api/console/scripts/{name}"), Some(&json!({"source": "x", "version": null})));
        assert_eq!(escape.status, 404, "{name}: {}", escape.body);
        assert_eq!(dev.call("GET", &format!("/api/console/scripts/{name}"), None).status, 404, "{name}");
    }
    assert!(!dir.path().join("../escape.avap").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("console-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_run_reports_its_result_logs_usage_and_error_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let dev = Dev::start(dir.path(), &["--timeout-ms", "4000"]);
    let info = dev.call("GET", "/api/console/info", None);
    assert_eq!(info.body["limits"]["timeout_ms"], 4000, "{}", info.body);
    assert!(info.body["limits"]["fuel"].as_u64().unwrap_or(0) > 0);
    assert_eq!(info.body["grants"], json!({"db": null, "http": false, "http_allow": []}));

    let script = "addParam(name, who)\naddParam(page, p)\nmsg = `Hello ${who} ${p} ${v}`\naddResult(msg)\n";
    let ran = dev.call(
        "POST",
        "/api/console/run",
        Some(&json!({
            "id": "run-1",
            "name": "hello",
            "script": script,
            "params": {"name": "Ann"},
            "query": "page=2",
            "variables": {"v": 7},
        })),
    );
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.body["status"], 200);
    let response = &ran.body["response"];
    assert_eq!(response["result"], json!({"msg": "Hello Ann 2 7"}));
    assert_eq!(response["variables"]["who"], "Ann");
    let logs = response["logs"].as_array().expect("logs");
    assert_eq!(logs.iter().map(|l| l["line"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), [1, 2, 4]);
    assert!(logs.iter().all(|l| l["duration_ms"].is_number()), "{logs:?}");
    assert!(response["usage"]["fuel"].as_u64().unwrap_or(0) > 0, "{response}");
    assert!(ran.body["elapsed_ms"].as_f64().unwrap_or(0.0) > 0.0);
    dev.wait_for_output("console run hello: 200");

    // A failure is the host's answer, with its line.
    let failed = dev.call("POST", "/api/console/run", Some(&json!({"script": "x = 1\ny = x / 0\n"})));
    assert_eq!(failed.body["status"], 400, "{}", failed.body);
    assert_eq!(failed.body["response"]["kind"], "runtime_error");
    assert_eq!(failed.body["response"]["line"], 2);
    // The host's rules for the request hold here too.
    let reserved = dev.call("POST", "/api/console/run", Some(&json!({"script": "x = 1\n", "params": {"script": "y"}})));
    assert_eq!((reserved.status, reserved.kind()), (400, Some("bad_request")), "{}", reserved.body);
    let bad_id = dev.call("POST", "/api/console/run", Some(&json!({"id": "../x", "script": "x = 1\n"})));
    assert_eq!(bad_id.status, 400);
}

/// An HTTP service on loopback that answers only after `delay`: a slow API
/// a script waits on.
fn slow_upstream(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            });
        }
    });
    addr
}

#[test]
fn a_long_run_can_be_cancelled() {
    let dir = tempfile::tempdir().expect("tmp");
    let slow = slow_upstream(Duration::from_secs(30));
    let dev = Dev::start(dir.path(), &["--http-allow", &slow, "--timeout-ms", "60000"]);
    let script = format!("RequestGet(\"http://{slow}/slow\", , , data)\naddResult(data)\n");
    let body = json!({"id": "long-1", "name": "slow", "script": script});
    let url = dev.url("/api/console/run");
    let origin = dev.url("");
    let started = Instant::now();
    let run = std::thread::spawn(move || {
        let client = Client::builder().timeout(Duration::from_secs(90)).build().expect("client");
        let response = client
            .post(url)
            .header("sec-fetch-site", "same-origin")
            .header("origin", origin)
            .json(&body)
            .send()
            .expect("run");
        answer(response)
    });
    // The run is in flight (its id is known) until it is cancelled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cancel = dev.call("POST", "/api/console/runs/long-1/cancel", None);
        if cancel.status == 200 {
            break;
        }
        assert_eq!(cancel.status, 404, "{}", cancel.body);
        assert!(Instant::now() < deadline, "the run never showed up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = run.join().expect("run thread");
    assert_eq!(answer.body["cancelled"], true, "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(25), "cancelled long before the upstream answers");
    dev.wait_for_output("console run slow: cancelled");
    assert_eq!(dev.call("POST", "/api/console/runs/long-1/cancel", None).status, 404, "forgotten once done");
    // The sandbox is free for the next run.
    let next = dev.call("POST", "/api/console/run", Some(&json!({"script": "addVar(a, 1)\naddResult(a)\n"})));
    assert_eq!(next.body["response"]["result"], json!({"a": 1}), "{}", next.body);
}

/// Reads server-sent events from `GET /api/console/events` on a thread:
/// `(event, data)` pairs.
fn events(dev: &Dev) -> mpsc::Receiver<(String, Value)> {
    let client = Client::builder().timeout(None::<Duration>).build().expect("client");
    let response = client
        .get(dev.url("/api/console/events"))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/event-stream")
        .send()
        .expect("events");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"),
        "{:?}",
        response.headers()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(response).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                let data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if tx.send((std::mem::take(&mut event), data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn next_event(rx: &mpsc::Receiver<(String, Value)>, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((event, data)) if event == kind => return data,
            Ok(other) => seen.push(other),
            Err(_) => break,
        }
    }
    panic!("no {kind} event; saw {seen:?}");
}

#[test]
fn changes_on_disk_are_pushed_to_the_page() {
    let dir = tempfile::tempdir().expect("tmp");
    let catalog = tempfile::tempdir().expect("tmp");
    write(dir.path(), "hello.avap", "addResult(a)\n");
    write(catalog.path(), "greet.avap", "// Says hello.\nfunction greet(who) {\n  return `hi ${who}`\n}\n");
    let dev = Dev::start(dir.path(), &["--catalog", &catalog.path().display().to_string()]);
    let commands = dev.call("GET", "/api/console/commands", None);
    let list = commands.body["commands"].as_array().expect("commands");
    let greet = list.iter().find(|c| c["name"] == "greet").expect("the catalog's command");
    assert_eq!((&greet["origin"], &greet["description"]), (&json!("catalog"), &json!("Says hello.")));
    assert_eq!(greet["params"], json!([{"name": "who", "kind": "value"}]));
    let add_var = list.iter().find(|c| c["name"] == "addVar").expect("a standard command");
    assert_eq!(add_var["signature"], "addVar(targetVarName, varValue)");
    assert!(add_var["description"].as_str().unwrap_or_default().len() > 10, "{add_var}");

    let rx = events(&dev);
    next_event(&rx, "hello");
    // Saved by another editor: the page hears which file and its version.
    let text = "addVar(a, 5)\naddResult(a)\n";
    write(dir.path(), "hello.avap", text);
    let changed = next_event(&rx, "changed");
    assert_eq!(changed["name"], "hello");
    let on_disk = dev.call("GET", "/api/console/scripts/hello", None);
    assert_eq!(changed["version"], on_disk.body["version"]);
    write(dir.path(), "added.avap", "addResult(b)\n");
    assert_eq!(next_event(&rx, "changed")["name"], "added");
    std::fs::remove_file(dir.path().join("added.avap")).expect("rm");
    assert_eq!(next_event(&rx, "removed")["name"], "added");
    // The catalog folder changed: the commands are sent again.
    write(catalog.path(), "shout.avap", "function shout(x) {\n  return x\n}\n");
    next_event(&rx, "commands");
    let commands = dev.call("GET", "/api/console/commands", None);
    assert!(commands.body["commands"].as_array().expect("commands").iter().any(|c| c["name"] == "shout"));

    // Stopped (SIGTERM, as Ctrl+C), it ends the open stream and exits at
    // once rather than wait for the page to go away.
    let mut dev = dev;
    let killed = std::process::Command::new("kill").args(["-TERM", &dev.child.id().to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = dev.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "avap dev is still running with a page listening");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_err(), "the stream ended");
}

#[test]
fn openapi_lists_every_script_as_a_post_operation() {
    let dir = tempfile::tempdir().expect("tmp");
    write(
        dir.path(),
        "hello.avap",
        "// Greets someone.\naddParam(name, who)\nif(who, \"\", \"==\")\n  addParam(\"fallback\", who)\nend()\naddResult(who)\n",
    );
    write(dir.path(), "broken.avap", "if(a, 1, \"==\")\n");
    let dev = Dev::start(dir.path(), &[]);
    let doc = dev.call("GET", "/openapi.json", None).body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(paths.keys().collect::<Vec<_>>(), ["/broken", "/hello"]);
    let hello = &doc["paths"]["/hello"]["post"];
    assert_eq!(hello["description"], "Greets someone.");
    assert_eq!(hello["x-avap-script"], "hello.avap");
    let params: Vec<(&str, &str)> = hello["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default(), p["in"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(params, [("name", "query"), ("fallback", "query")]);
    let body = &hello["requestBody"]["content"]["application/json"]["schema"]["properties"];
    assert!(body["name"].is_object() && body["variables"].is_object(), "{body}");
    let broken = &doc["paths"]["/broken"]["post"];
    assert!(broken["description"].as_str().unwrap_or_default().contains("does not parse"), "{broken}");
    // What the document says is what the route does.
    let ran = dev.send("POST", "/hello?name=Ann", None, &[]);
    assert_eq!(ran.body["result"], json!({"who": "Ann"}), "{}", ran.body);
}

/// Every route of the console, with a body where it takes one.
fn console_routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/api/console/assets/console.js", None),
        ("GET", "/api/console/info", None),
        ("GET", "/api/console/scripts", None),
        ("GET", "/api/console/scripts/target", None),
        ("PUT", "/api/console/scripts/written", Some(json!({"source": "addResult(a)\n", "version": null}))),
        ("POST", "/api/console/check", Some(json!({"source": "addResult(a)\n"}))),
        ("POST", "/api/console/format", Some(json!({"source": "addResult(a)\n"}))),
        ("POST", "/api/console/run", Some(json!({"id": "guarded", "script": "addVar(a, 1)\naddResult(a)\n"}))),
        ("POST", "/api/console/runs/guarded/cancel", None),
        ("GET", "/api/console/commands", None),
        ("GET", "/api/console/events", None),
        ("GET", "/openapi.json", None),
    ]
}

/// Headers a request is sent with, and the status and `kind` it gets.
type Refused<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

/// The guards of `avap dev` hold on the console's routes: what another
/// site's page (or a rebound host name) makes the browser send is refused
/// before the route runs, and writes nothing.
#[test]
fn the_console_api_refuses_other_sites_and_rebound_names() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "target.avap", "addResult(a)\n");
    let dev = Dev::start(dir.path(), &[]);
    let port = dev.port.to_string();
    let evil_host = format!("evil.example:{port}");
    let same_site = format!("http://localhost:{}", dev.port + 1);
    let refused: Vec<Refused> = vec![
        // A page of another site: fetch, form, <img>, EventSource.
        (
            vec![("sec-fetch-site", "cross-site"), ("user-agent", FIREFOX), ("origin", "http://evil.example")],
            403,
            "cross_origin",
        ),
        (
            vec![("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "no-cors"), ("user-agent", FIREFOX)],
            403,
            "cross_origin",
        ),
        // A page on another port of this machine: same site, another origin.
        (vec![("sec-fetch-site", "same-site"), ("user-agent", FIREFOX), ("origin", &same_site)], 403, "cross_origin"),
        // An Origin that is not this server's, whatever else is said.
        (vec![("sec-fetch-site", "same-origin"), ("origin", "http://evil.example")], 403, "cross_origin"),
        // A browser too old to say where a request comes from.
        (vec![("user-agent", "Mozilla/5.0 (Macintosh) Version/15.6 Safari/605.1.15")], 403, "cross_origin"),
        // DNS rebinding: another name for this address, even "same-origin" to it.
        (
            vec![("host", &evil_host), ("sec-fetch-site", "same-origin"), ("user-agent", FIREFOX)],
            421,
            "misdirected_host",
        ),
    ];
    for (method, path, body) in console_routes() {
        for (headers, status, kind) in &refused {
            let got = dev.send(method, path, body.as_ref().map(|b| ("application/json", b.to_string())), headers);
            assert_eq!((got.status, got.kind()), (*status, Some(*kind)), "{method} {path} {headers:?}: {}", got.body);
        }
    }
    // The page itself, asked for by another site's link or frame.
    let framed = dev.send(
        "GET",
        "/",
        None,
        &[
            ("accept", "text/html"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-dest", "iframe"),
            ("user-agent", FIREFOX),
        ],
    );
    assert_eq!((framed.status, framed.kind()), (403, Some("cross_origin")));
    assert!(!dir.path().join("written.avap").exists(), "no refused request wrote a file");
    dev.wait_for_output("refused PUT /api/console/scripts/written");

    // The page's own requests (same origin) pass on every route.
    for (method, path, body) in console_routes() {
        if path.ends_with("/events") || path.ends_with("/cancel") {
            continue;
        }
        let got = dev.call(method, path, body.as_ref());
        assert_eq!(got.status, 200, "{method} {path}: {}", got.body);
    }
    assert!(dir.path().join("written.avap").exists());
}

/// Beyond loopback there is no console: the page, and its API that writes
/// files, are served only to this machine's browser. (An IPv4-mapped IPv6
/// address is not a loopback address to `avap dev`, though it reaches only
/// this machine: the test listens nowhere else.)
#[test]
fn the_console_is_not_served_beyond_loopback() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "hello.avap", "addResult(a)\n");
    let dev = Dev::start_on(dir.path(), "::ffff:127.0.0.1", &[]);
    dev.wait_for_output("warning: listening on");
    let page = dev.send("GET", "/", None, &[("accept", "text/html")]);
    assert_eq!(page.body, json!({"scripts": ["/hello"]}), "no page: the list");
    for (method, path, body) in console_routes() {
        if path == "/openapi.json" {
            continue;
        }
        let got = dev.send(method, path, body.map(|b| ("application/json", b.to_string())), &[]);
        assert_eq!(got.status, 404, "{method} {path}: {}", got.body);
    }
    assert!(!dir.path().join("written.avap").exists());
    assert_eq!(dev.send("GET", "/openapi.json", None, &[]).status, 200);
}
