//! The capability commands against a scripted host: what the guest sends,
//! and how it reads what comes back. The host side (real HTTP, real
//! databases) is tested in host/ and tests/.

use serde_json::{Value as J, json};

use crate::host::{Capability, Host};

/// Records every request and answers from a list of canned replies.
struct Scripted {
    replies: Vec<Result<J, String>>,
    seen: Vec<(Capability, J)>,
}

impl Host for Scripted {
    fn call(&mut self, capability: Capability, request: &[u8]) -> Result<Vec<u8>, String> {
        self.seen.push((capability, serde_json::from_slice(request).unwrap_or(J::Null)));
        if self.replies.is_empty() {
            return Err("no reply scripted".into());
        }
        self.replies.remove(0).map(|r| r.to_string().into_bytes())
    }
}

/// Runs `script` with a host that gives `replies` in order; returns the
/// output and the requests the guest sent.
fn with_host(script: &str, variables: J, replies: Vec<Result<J, String>>) -> (J, Vec<(Capability, J)>) {
    let input = json!({ "script": script, "variables": variables }).to_string();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut host = Scripted { replies, seen: Vec::new() };
            let out = crate::run_json_with_host(input.as_bytes(), &mut host);
            (serde_json::from_slice(&out).unwrap_or(J::Null), host.seen)
        })
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or((J::Null, Vec::new()))
}

fn http_ok(status: u16, body: &str) -> Result<J, String> {
    Ok(json!({ "ok": { "status": status, "reason": "", "body": body, "url": "http://svc/x" } }))
}

#[test]
fn request_get_sends_query_and_headers_and_parses_json() {
    let (out, seen) = with_host(
        "RequestGet(\"http://svc/users\", {\"q\": \"a b\", \"n\": 2}, '{\"X-Key\": \"k\"}', res)\naddResult(res)",
        json!({}),
        vec![http_ok(200, r#"{"users": [1, 2]}"#)],
    );
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["result"]["res"], json!({"users": [1, 2]}));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, Capability::Http);
    assert_eq!(
        seen[0].1,
        json!({"method": "GET", "url": "http://svc/users", "query": [["q", "a b"], ["n", "2"]],
               "headers": [["X-Key", "k"]], "body": null})
    );
}

#[test]
fn request_get_text_body_and_empty_arguments() {
    let (out, seen) = with_host("RequestGet(u, , , res)", json!({"u": "http://svc/t"}), vec![http_ok(200, "plain")]);
    assert_eq!(out["variables"]["res"], "plain");
    assert_eq!(seen[0].1["query"], json!([]));
    assert_eq!(seen[0].1["headers"], json!([]));
}

#[test]
fn request_get_raises_on_4xx_5xx_and_try_catches() {
    let script = "try()\n  RequestGet(\"http://svc/missing\", , , res)\nexception(err)\n  _status = 502\nend()";
    let reply =
        Ok(json!({ "ok": { "status": 404, "reason": "Not Found", "body": "no", "url": "http://svc/missing" } }));
    let (out, _) = with_host(script, json!({}), vec![reply]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["status"], 502);
    assert_eq!(out["variables"]["err"], "RequestGet: HTTP 404 Not Found from http://svc/missing");
    assert!(out["variables"].get("res").is_none());
    // Outside try() the error stops the script.
    let (out, _) = with_host("RequestGet(\"http://svc/x\", , , res)", json!({}), vec![http_ok(500, "boom")]);
    assert_eq!(out["ok"], false);
    assert_eq!(out["error"], "line 1: RequestGet: HTTP 500 from http://svc/x");
}

#[test]
fn request_post_bodies_and_any_status() {
    let script = "RequestPost(u, , , {\"a\": 1}, r1)\nRequestPost(u, , , '[1, 2]', r2)\n\
                  RequestPost(u, , , \"a=1&b=2\", r3)\nRequestPost(u, , , , r4)";
    let replies =
        vec![http_ok(201, r#"{"id": 7}"#), http_ok(400, r#"{"error": "bad"}"#), http_ok(200, "ok"), http_ok(204, "")];
    let (out, seen) = with_host(script, json!({"u": "http://svc/p"}), replies);
    assert_eq!(out["ok"], true, "{out}");
    let v = &out["variables"];
    assert_eq!(v["r1"], json!({"id": 7}));
    assert_eq!(v["r2"], json!({"error": "bad"}), "RequestPost keeps the body of a 4xx");
    assert_eq!(v["r3"], "ok");
    assert_eq!(v["r4"], "");
    let bodies: Vec<&J> = seen.iter().map(|(_, r)| &r["body"]).collect();
    assert_eq!(
        bodies,
        [&json!({"json": "{\"a\":1}"}), &json!({"json": "[1, 2]"}), &json!({"text": "a=1&b=2"}), &J::Null]
    );
    assert!(seen.iter().all(|(_, r)| r["method"] == "POST"));
}

/// The original servers' users wrote dicts as Python-style text
/// (`"{'postId': 1}"`, `True`, `None`): querystring, headers and body read
/// it as the dict it spells, never evaluating a name or a call in it.
#[test]
fn dicts_written_as_text_in_avap_literal_syntax() {
    let script = "addVar(filters, \"{'postId': 1, 'all': True, 'tag': None, 'n': -2.5,}\")\n\
                  RequestGet(\"http://svc/comments\", filters, \"{'X-Key': 'k'}\", res)\n\
                  RequestPost(\"http://svc/c\", , , \"{'a': [1, 'two', False]}\", res2)\n\
                  RequestPost(\"http://svc/c\", , , \"{'a': b}\", res3)\n\
                  addResult(res)";
    let (out, seen) = with_host(script, json!({}), vec![http_ok(200, "[]"), http_ok(201, "{}"), http_ok(201, "{}")]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        seen[0].1["query"],
        json!([["postId", "1"], ["all", "True"], ["tag", "None"], ["n", "-2.5"]]),
        "values are sent as their text"
    );
    assert_eq!(seen[0].1["headers"], json!([["X-Key", "k"]]));
    assert_eq!(seen[1].1["body"], json!({"json": "{\"a\":[1,\"two\",false]}"}));
    // A name inside is not data: the text goes as it is.
    assert_eq!(seen[2].1["body"], json!({"text": "{'a': b}"}));
    for bad in ["\"{'a': b}\"", "\"{'a': f(1)}\"", "\"{'a': 1 + 1}\"", "\"{'a': 1\""] {
        let (out, seen) = with_host(&format!("RequestGet(\"http://x\", {bad}, , r)"), json!({}), vec![]);
        assert!(out["error"].as_str().unwrap_or_default().contains("querystring must be a dict"), "{bad}: {out}");
        assert!(seen.is_empty());
    }
}

#[test]
fn request_argument_errors() {
    let (out, seen) = with_host("RequestGet(\"\", , , r)", json!({}), vec![]);
    assert_eq!(out["error"], "line 1: RequestGet: the url is empty");
    assert!(seen.is_empty());
    let (out, _) = with_host("RequestGet(\"http://x\", \"a=1\", , r)", json!({}), vec![]);
    assert_eq!(
        out["error"],
        "line 1: RequestGet: querystring must be a dict, the text of one (JSON or AVAP literal syntax), or empty"
    );
    let (out, _) = with_host("RequestGet(\"http://x\", , [1], r)", json!({}), vec![]);
    assert!(out["error"].as_str().unwrap_or_default().contains("headers must be a dict"), "{out}");
}

#[test]
fn host_errors_are_catchable_runtime_errors() {
    let refused = Ok(json!({ "error": "destination refused: 10.0.0.1 is a private address" }));
    let script = "try()\n  RequestGet(\"http://10.0.0.1/\", , , r)\nexception(e)\nend()";
    let (out, _) = with_host(script, json!({}), vec![refused]);
    assert_eq!(out["variables"]["e"], "RequestGet: destination refused: 10.0.0.1 is a private address");
    // A transport-level refusal and an unreadable reply are errors too.
    let (out, _) = with_host("RequestGet(\"http://x\", , , r)", json!({}), vec![Err("not granted".into())]);
    assert_eq!(out["error"], "line 1: RequestGet: not granted");
    let (out, _) = with_host("RequestGet(\"http://x\", , , r)", json!({}), vec![Ok(json!([1]))]);
    assert_eq!(out["error"], "line 1: RequestGet: the host sent a reply that is not an object");
}

#[test]
fn orm_direct_template_parts_become_parameters() {
    let script = "ormDirect(`SELECT * FROM users WHERE id = ${uid} AND name = '${name}'`, rows)";
    let reply = Ok(json!({ "ok": { "columns": ["id", "name"], "rows": [[1, "ann"], [2, null]] } }));
    let (out, seen) = with_host(script, json!({"uid": "1 OR 1=1", "name": "x'; DROP TABLE users; --"}), vec![reply]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["variables"]["rows"], json!([{"id": 1, "name": "ann"}, {"id": 2, "name": null}]));
    assert_eq!(seen[0].0, Capability::Db);
    assert_eq!(
        seen[0].1,
        json!({"sql": ["SELECT * FROM users WHERE id = ", " AND name = '", "'"],
               "params": ["1 OR 1=1", "x'; DROP TABLE users; --"]})
    );
}

#[test]
fn orm_direct_plain_text_dml_and_errors() {
    let (out, seen) = with_host(
        "ormDirect(\"DELETE FROM t\", r)\normDirect(q, r2)",
        json!({"q": "SELECT 1 AS one"}),
        vec![Ok(json!({"ok": {"affected": 3}})), Ok(json!({"ok": {"columns": ["one"], "rows": []}}))],
    );
    assert_eq!(out["variables"]["r"], "Success: 3");
    assert_eq!(out["variables"]["r2"], json!([]));
    assert_eq!(seen[0].1, json!({"sql": ["DELETE FROM t"], "params": []}));
    assert_eq!(seen[1].1, json!({"sql": ["SELECT 1 AS one"], "params": []}));
    let (out, _) = with_host("ormDirect(`SELECT ${nope}`, r)", json!({}), vec![]);
    assert_eq!(out["error"], "line 1: template variable 'nope' is not defined");
    let (out, _) = with_host("ormDirect(\"  \", r)", json!({}), vec![]);
    assert_eq!(out["error"], "line 1: ormDirect: the statement is empty");
    let script = "try()\normDirect(\"SELECT pg_sleep(9)\", r)\nexception(e)\nend()";
    let (out, _) = with_host(script, json!({}), vec![Ok(json!({"error": "statement timeout of 50 ms exceeded"}))]);
    assert_eq!(out["variables"]["e"], "ormDirect: statement timeout of 50 ms exceeded");
}
