//! `avap lsp` over the real binary's stdio: JSON-RPC framed with
//! `Content-Length`, as an editor speaks it. Every wait has a deadline, so
//! a hung server fails the test instead of hanging CI.

use std::io::{BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: i64,
    /// Notifications seen while waiting for something else.
    notifications: Vec<Value>,
}

/// Reads one framed message: headers to the blank line, then the body.
fn read_message(reader: &mut impl std::io::BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0u8; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_avap"))
            .arg("lsp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn avap lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, incoming) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Client { child, stdin, incoming, next_id: 1, notifications: Vec::new() }
    }

    fn write(&mut self, message: &Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.write(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and waits for its response (the whole message).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            let message = self.incoming.recv_timeout(left).unwrap_or_else(|_| panic!("no answer to {method}"));
            if message["id"] == id {
                return message;
            }
            self.notifications.push(message);
        }
    }

    /// Waits for a notification `method` (already seen ones first).
    fn notification(&mut self, method: &str) -> Value {
        if let Some(at) = self.notifications.iter().position(|n| n["method"] == method) {
            return self.notifications.remove(at);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            let message = self.incoming.recv_timeout(left).unwrap_or_else(|_| panic!("no {method} notification"));
            if message["method"] == method {
                return message;
            }
            self.notifications.push(message);
        }
    }

    fn open(&mut self, uri: &str, text: &str) -> Value {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "avap", "version": 1, "text": text}}),
        );
        self.notification("textDocument/publishDiagnostics")
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) -> Value {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
        self.notification("textDocument/publishDiagnostics")
    }

    /// `shutdown`, `exit`, and the process's exit status.
    fn finish(mut self) -> std::process::ExitStatus {
        let answer = self.request("shutdown", Value::Null);
        assert_eq!(answer["result"], Value::Null, "{answer}");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "avap lsp did not exit after exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn initialize(client: &mut Client, encodings: &[&str], options: Value) -> Value {
    let answer = client.request(
        "initialize",
        json!({
            "processId": null,
            "rootUri": null,
            "capabilities": {
                "general": {"positionEncodings": encodings},
                "textDocument": {"completion": {"completionItem": {"snippetSupport": true}}},
            },
            "initializationOptions": options,
        }),
    );
    client.notify("initialized", json!({}));
    answer
}

fn range(line: u64, from: u64, to: u64) -> Value {
    json!({"start": {"line": line, "character": from}, "end": {"line": line, "character": to}})
}

#[test]
fn a_conversation_with_the_language_server() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("greet.avap"), "// Says hello.\nfunction greet(who) {\n    return who\n}\n")
        .expect("catalog");
    std::fs::write(dir.path().join("broken.avap"), "function other(x) {\n}\n").expect("catalog");
    let mut client = Client::start(&[]);
    let answer = initialize(&mut client, &["utf-16"], json!({"catalog": dir.path()}));
    let caps = &answer["result"]["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-16", "{answer}");
    assert_eq!(caps["textDocumentSync"], 1, "full sync");
    for provider in ["hoverProvider", "definitionProvider", "documentSymbolProvider", "documentFormattingProvider"] {
        assert_eq!(caps[provider], true, "{provider}: {answer}");
    }
    // The catalog's broken command is reported, not fatal.
    let log = client.notification("window/logMessage");
    assert!(log["params"]["message"].as_str().unwrap_or_default().contains("broken.avap"), "{log}");

    // An unclosed if: an error at the parser's line and column.
    let uri = "file:///work/s.avap";
    let published = client.open(uri, "addVar(a, 1)\nif(a, 1, \"==\")\n    addResult(a)\n");
    let diagnostics = &published["params"]["diagnostics"];
    assert_eq!(diagnostics.as_array().map(Vec::len), Some(1), "{published}");
    assert_eq!(diagnostics[0]["range"], range(1, 0, 2), "{published}");
    assert_eq!(diagnostics[0]["severity"], 1);
    assert_eq!(diagnostics[0]["source"], "avap");
    assert!(diagnostics[0]["message"].as_str().unwrap_or_default().contains("end()"), "{published}");

    // Fixed: no diagnostics; an unknown call: a warning on its name.
    let published = client.change(uri, 2, "addVar(a, 1)\nif(a, 1, \"==\")\n    addResult(a)\nend()\n");
    assert_eq!(published["params"]["diagnostics"], json!([]), "{published}");
    let published = client.change(uri, 3, "addVar(a, 1)\n  frob(a)\n");
    let first = &published["params"]["diagnostics"][0];
    assert_eq!((&first["range"], &first["severity"]), (&range(1, 2, 6), &json!(2)), "{published}");
    let text = "function double(n) {\n    return n * 2\n}\nv = double(4)\ngreet(v)\naddResult(v)\n";
    let published = client.change(uri, 4, text);
    assert_eq!(published["params"]["diagnostics"], json!([]), "the catalog's greet is known: {published}");

    // Completion: standard commands with their signature and a snippet,
    // the catalog's command, the script's function, keywords.
    let answer = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 0}}),
    );
    let items = answer["result"].as_array().cloned().unwrap_or_default();
    let item = |label: &str| items.iter().find(|i| i["label"] == label).cloned().unwrap_or(Value::Null);
    assert_eq!(item("addVar")["detail"], "addVar(targetVarName, varValue)", "{answer}");
    assert_eq!(item("addVar")["insertText"], "addVar(${1:targetVarName}, ${2:varValue})");
    assert_eq!(item("greet")["detail"], "greet(who)");
    assert_eq!(item("double")["insertText"], "double(${1:n})");
    assert_eq!(item("function")["kind"], 14, "a keyword");
    assert!(items.len() >= 27 + 2 + 5, "{}", items.len());

    // Hover on a command and on the script's function.
    let answer = client
        .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 5, "character": 3}}));
    let hover = answer["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
    assert!(hover.contains("```avap\naddResult(sourceVariable)\n```"), "{answer}");
    assert!(hover.contains("- `sourceVariable` (source)"), "{hover}");
    assert!(hover.contains("Parameters:"), "{hover}");
    let answer = client
        .request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 3, "character": 6}}));
    assert!(answer["result"]["contents"]["value"].as_str().unwrap_or_default().contains("function double(n)"));

    // Definition: from the call on line 4 to the header's name.
    let answer = client.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": uri}, "position": {"line": 3, "character": 5}}),
    );
    assert_eq!(answer["result"]["uri"], uri, "{answer}");
    assert_eq!(answer["result"]["range"], range(0, 9, 15), "{answer}");

    // Symbols: the function's whole block and the top-level variable.
    let answer = client.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}}));
    let symbols = answer["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(symbols[0]["name"], "double", "{answer}");
    assert_eq!(symbols[0]["kind"], 12);
    assert_eq!(symbols[0]["range"]["end"]["line"], 2);
    assert_eq!(symbols[1]["name"], "v");
    assert_eq!(symbols[1]["kind"], 13);

    // Formatting: one edit with the canonical text; none when canonical;
    // an error for a document with syntax errors.
    client.change(uri, 5, "addVar(a,1)\nif(a,1,\"==\")\naddResult(a)\nend()\n");
    let answer = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(answer["result"][0]["newText"], "addVar(a, 1)\nif(a, 1, \"==\")\n    addResult(a)\nend()\n", "{answer}");
    client.change(uri, 6, "addVar(a, 1)\n");
    let answer = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(answer["result"], json!([]), "{answer}");
    client.change(uri, 7, "if(a, 1, \"==\")\n");
    let answer = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(answer["error"]["code"], -32803, "{answer}");

    // Unknown methods, malformed parameters, unknown documents.
    let answer = client.request("textDocument/frobnicate", json!({}));
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    let answer = client.request("textDocument/hover", json!({"nonsense": true}));
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let answer = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": "file:///nope.avap"}, "position": {"line": 0, "character": 0}}),
    );
    assert_eq!(answer["result"], Value::Null, "{answer}");

    // Closing clears the diagnostics.
    client.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
    assert_eq!(client.notification("textDocument/publishDiagnostics")["params"]["diagnostics"], json!([]));

    let status = client.finish();
    assert!(status.success(), "{status}");
}

#[test]
fn columns_follow_the_negotiated_encoding() {
    // The emoji is one Unicode scalar value and two UTF-16 code units.
    let text = "function double(n) {\n    return n * 2\n}\ns = \"😀\" + double(1)\naddVar(x, \"😀\") frob\n";
    for (encoding, shift) in [("utf-16", 1), ("utf-32", 0)] {
        let mut client = Client::start(&[]);
        let answer = initialize(&mut client, &[encoding], Value::Null);
        assert_eq!(answer["result"]["capabilities"]["positionEncoding"], encoding);
        let published = client.open("file:///e.avap", text);
        let diagnostics = &published["params"]["diagnostics"];
        assert_eq!(diagnostics.as_array().map(Vec::len), Some(1), "{published}");
        // `frob` after `)`: characters 15..19.
        assert_eq!(diagnostics[0]["range"], range(4, 15 + shift, 19 + shift), "{encoding}: {published}");
        // `double` after the emoji: character 10.
        let answer = client.request(
            "textDocument/definition",
            json!({"textDocument": {"uri": "file:///e.avap"}, "position": {"line": 3, "character": 10 + shift}}),
        );
        assert_eq!(answer["result"]["range"], range(0, 9, 15), "{encoding}: {answer}");
        assert!(client.finish().success());
    }
}
