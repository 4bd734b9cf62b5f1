//! What the test binaries share: the server under test on 127.0.0.1:0, the
//! configuration they start from, and the services the capabilities talk
//! to ([`fixtures`]).

#![allow(dead_code)]

pub mod dns;
pub mod fixtures;

use avap_host::{AppState, Config};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        Server::with_state(AppState::new(&config).await.expect("host state")).await
    }

    pub async fn with_state(state: std::sync::Arc<AppState>) -> Server {
        // Bind port 0 and keep the listener: no pick-then-rebind race.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(avap_host::serve(listener, state, async {
            let _ = rx.await;
        }));
        Server { base: format!("http://{addr}"), client: reqwest::Client::new(), _shutdown: tx }
    }

    pub async fn default() -> Server {
        Server::start(config(|_| {})).await
    }

    pub async fn post(&self, path_and_query: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp =
            self.client.post(format!("{}{path_and_query}", self.base)).json(&body).send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON response {status}: {text}"));
        (status, value, headers)
    }

    pub async fn run(&self, script: &str) -> (u16, Value) {
        let (status, body, _) = self.post("/api/v1/execute", json!({ "script": script })).await;
        (status, body)
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(format!("{}{path}", self.base)).send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// The server still answers and still runs scripts.
    pub async fn assert_healthy(&self) {
        let (status, _) = self.get_text("/health").await;
        assert_eq!(status, 200);
        let (status, body) = self.run("addVar(a, 1)\naddResult(a)").await;
        assert_eq!((status, &body["result"]), (200, &json!({"a": 1})), "{body}");
    }
}

/// Built-in defaults, standalone (no definition server), then `f`.
pub fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::defaults();
    c.standalone = true;
    // The published keys and plaintext: tests are development.
    c.dev = true;
    // Compiled guests shared by the test binaries of this target directory
    // (not the user's cache): one compile per guest for the whole run.
    c.cache_dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/artifacts").into();
    f(&mut c);
    c
}
