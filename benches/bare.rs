//! The baseline of `benches/load.sh`: an axum server of the host's shape
//! that does nothing but what HTTP needs. `POST /api/v1/execute` parses
//! the JSON body and answers a constant JSON; anything the host spends
//! beyond this is the cost of AVAP (see `../shared/notes/MEASURING.md`).
//!
//! `bare-server [PORT]` (default 18870), listening on 127.0.0.1.

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18870);
    let app = axum::Router::new().route(
        "/api/v1/execute",
        post(|Json(_body): Json<Value>| async {
            Json(json!({"success": true, "result": {"a": 1}, "variables": {"a": 1}, "logs": []}))
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
