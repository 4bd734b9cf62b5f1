//! The documents that cross the boundary, as types both sides use (feature
//! `serde`). Every document is JSON.
//!
//! - The host writes an input document into the guest (`avap_alloc` +
//!   `avap_run`): [`GuestLimits`] is the part of it that carries the host's
//!   caps; the rest is written by the host from raw request text.
//! - The guest answers an output document: [`GuestOutput`], its payloads
//!   kept as raw JSON text.
//! - A capability call hands the host a request ([`HttpRequest`],
//!   [`DbRequest`]) and gets a [`Reply`] back: `{"ok": payload}` or
//!   `{"error": "message"}`, with [`HttpResponse`] or [`DbReply`] as the
//!   payload.
//!
//! Field names are the contract: a rename here is an ABI change.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ErrorKind, Mode};

/// The caps the host sets in every input document (`"limits"`); the guest
/// holds the script to them on top of its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestLimits {
    /// The host's output cap ([`crate::OUTPUT_LIMIT`]): the guest answers a
    /// small `limit` failure naming it instead of a larger document.
    pub max_output_bytes: usize,
}

/// The output document of a guest, its payloads kept as raw JSON text
/// borrowed from the document. Untrusted: the host's reader checks every
/// field before it uses one.
#[derive(Debug, Deserialize)]
pub struct GuestOutput<'a> {
    pub ok: bool,
    /// The HTTP status the script set (`_status`).
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub variables: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub logs: Option<&'a RawValue>,
    #[serde(default)]
    pub logs_truncated: bool,
    /// Why the script failed (failures only).
    #[serde(default)]
    pub kind: Option<ErrorKind>,
    /// The limit a `limit` failure hit, by name (`max_output_bytes`, ...).
    #[serde(default)]
    pub limit: Option<Cow<'a, str>>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default, borrow)]
    pub diagnostics: Option<&'a RawValue>,
    /// Check mode: the functions the script defines.
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// Check mode: the commands the script calls.
    #[serde(default)]
    pub commands: Option<Vec<String>>,
    /// Which mode answered.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Check mode and `avap_prepare`: catalog functions whose source is
    /// invalid, `[{"name", "error"}]`.
    #[serde(default, borrow)]
    pub catalog_errors: Option<&'a RawValue>,
}

impl GuestOutput<'_> {
    /// Whether this failure is the guest refusing to write an output over
    /// the host's output cap.
    pub fn hit_output_cap(&self) -> bool {
        !self.ok && self.kind == Some(ErrorKind::Limit) && self.limit.as_deref() == Some(crate::OUTPUT_LIMIT)
    }
}

/// The answer to a capability call: `{"ok": payload}` or `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply<T> {
    Ok(T),
    Error(String),
}

/// `http_request`: one outbound request (capability [`crate::Capability::Http`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest<'a> {
    pub method: HttpMethod,
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// Query-string pairs, appended in order.
    #[serde(default)]
    pub query: Vec<(String, String)>,
    /// Header pairs, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// The methods a script can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl HttpMethod {
    pub const fn name(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// A request body: JSON text (sent as `application/json`) or plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HttpBody {
    Json(String),
    Text(String),
}

/// The payload of a successful `http_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line's reason phrase (may be empty).
    #[serde(default)]
    pub reason: String,
    /// The body as text (lossily decoded).
    #[serde(default)]
    pub body: String,
    /// The URL that answered, after redirects.
    #[serde(default)]
    pub url: String,
}

/// `db_query`: one statement (capability [`crate::Capability::Db`]), written as
/// `sql` parts joined by one placeholder each (`sql.len() == params.len() + 1`),
/// so every value a script puts into SQL is bound, never spliced. `P` is the
/// parameter type of each side (JSON values in the guest, raw values the host
/// reads without building a tree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbRequest<P> {
    pub sql: Vec<String>,
    #[serde(default = "Vec::new")]
    pub params: Vec<P>,
}

/// The payload of a successful `db_query`: rows, or the count of rows a
/// statement changed. The host writes it row by row within its caps; this
/// is its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DbReply<R> {
    Rows { columns: Vec<String>, rows: Vec<R> },
    Affected { affected: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_externally_tagged() {
        let ok: Reply<HttpResponse> =
            serde_json::from_str(r#"{"ok":{"status":200,"reason":"OK","body":"hi","url":"http://x/"}}"#)
                .expect("ok reply");
        assert!(matches!(ok, Reply::Ok(HttpResponse { status: 200, .. })));
        let err: Reply<HttpResponse> = serde_json::from_str(r#"{"error":"refused"}"#).expect("error reply");
        assert_eq!(err, Reply::Error("refused".into()));
        assert_eq!(serde_json::to_string(&Reply::<u8>::Error("x".into())).ok().as_deref(), Some(r#"{"error":"x"}"#));
    }

    #[test]
    fn requests_keep_their_field_names() {
        let req = HttpRequest {
            method: HttpMethod::Post,
            url: "http://a/".into(),
            query: vec![("q".into(), "1".into())],
            headers: vec![],
            body: Some(HttpBody::Json("{}".into())),
        };
        let text = serde_json::to_string(&req).expect("serialize");
        assert_eq!(
            text,
            r#"{"method":"POST","url":"http://a/","query":[["q","1"]],"headers":[],"body":{"json":"{}"}}"#
        );
        assert!(serde_json::from_str::<HttpRequest<'_>>(r#"{"method":"PUT","url":"x"}"#).is_err());
        let db: DbRequest<serde_json::Value> =
            serde_json::from_str(r#"{"sql":["select ",""],"params":[1]}"#).expect("db request");
        assert_eq!(db.params.len() + 1, db.sql.len());
        let rows: DbReply<Vec<serde_json::Value>> =
            serde_json::from_str(r#"{"columns":["a"],"rows":[[1]]}"#).expect("rows");
        assert!(matches!(rows, DbReply::Rows { ref columns, .. } if columns == &["a"]));
        let n: DbReply<Vec<serde_json::Value>> = serde_json::from_str(r#"{"affected":3}"#).expect("affected");
        assert_eq!(n, DbReply::Affected { affected: 3 });
    }

    #[test]
    fn an_output_failure_names_its_limit() {
        let out: GuestOutput<'_> =
            serde_json::from_str(r#"{"ok":false,"kind":"limit","limit":"max_output_bytes","error":"x"}"#)
                .expect("output");
        assert!(out.hit_output_cap());
        let out: GuestOutput<'_> =
            serde_json::from_str(r#"{"ok":false,"kind":"limit","limit":"max_steps"}"#).expect("output");
        assert!(!out.hit_output_cap());
    }
}
