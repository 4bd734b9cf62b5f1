//! What `/health` shows to a caller with the token: the live guest and
//! catalog, the definition server as last seen, every limit, the front
//! door's settings and what scripts may reach.

use serde_json::{Value, json};

use crate::catalog::CatalogSource;
use crate::state::{AppState, SyncMode, rfc3339};

/// The detailed health document.
pub fn detail(state: &AppState) -> Value {
    let live = state.live();
    let catalog = live.catalog.clone();
    let sync = match state.sync.lock() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let degraded = sync.mode != SyncMode::Standalone && catalog.source == CatalogSource::BuiltIn;
    json!({
        "status": "healthy",
        "service": "avap-host",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "guest": live.runner.info(),
        "catalog": {
            "source": catalog.source,
            "version_hash": catalog.version_hash,
            "manifest_serial": catalog.serial,
            "manifest_expires_at": catalog.expires_at.map(rfc3339),
            "commands": catalog.entries,
            "last_sync": catalog.synced_at.map(rfc3339),
            "applied_at": catalog.applied_at.map(rfc3339),
            "interface_mismatches": catalog.interface_mismatches,
            "note": degraded.then_some("definition server not synced yet: serving the built-in catalog and guest"),
        },
        "brain": sync,
        "trust": state.trust.summary(),
        "limits": state.limits,
        "front_door": state.front.config,
        "capabilities": capabilities(state),
    })
}

/// What scripts may reach, and within which caps.
fn capabilities(state: &AppState) -> Value {
    let caps = state.engine.capabilities();
    let http = caps.http.as_ref().map(|h| {
        let c = h.config();
        json!({
            "allow": c.allow.iter().map(|e| format!("{}:{}", e.host, e.port)).collect::<Vec<_>>(),
            "timeout_ms": c.timeout.as_millis(),
            "max_response_bytes": c.max_response_bytes,
            "max_requests": c.max_requests,
            "max_redirects": c.max_redirects,
            "max_connections": c.max_connections,
        })
    });
    let db = caps.db.as_ref().map(|d| {
        let c = d.config();
        json!({
            "backend": d.backend(),
            "max_connections": c.max_connections,
            "statement_timeout_ms": c.statement_timeout.as_millis(),
            "max_rows": c.max_rows,
            "max_queries": c.max_queries,
            "privileged_role_allowed": c.allow_privileged_role,
        })
    });
    let granted: Vec<&str> = caps.granted().into_iter().map(|c| c.name()).collect();
    json!({ "granted": granted, "http": http, "db": db })
}
