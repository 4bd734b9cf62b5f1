//! The HTTP API as an OpenAPI 3.1 document, served at `/openapi.json`.
//!
//! Bodies are described by the schema types below (derived with `utoipa`);
//! the routes, their statuses and the error `kind`s are built from the code
//! that answers them: every status an error can have comes from
//! [`Outcome::status`], and the `kind` enum is [`Outcome::ALL`]. A test
//! checks the document against the router, and CI runs schemathesis
//! against a live host with it (`.ci/run`).

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

use super::Outcome;

/// `POST /api/v1/execute`: a script or a signed package (exactly one), and
/// the request's parameters: every other top-level key is one (what
/// `addParam` reads). Written by hand: the choice between `script` and
/// `package` is a `oneOf`, which the derive cannot say.
fn execute_request_schema() -> Schema {
    let variables = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .description(Some("Seeds the script's variables."))
    };
    let with_script = ObjectBuilder::new()
        .property("script", script_property("addParam(name, who)\nmsg = `Hello ${who}`\naddResult(msg)"))
        .required("script")
        .property("variables", variables());
    let with_package = ObjectBuilder::new()
        .property(
            "package",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("Base64 of a signed package from `/api/v1/compile`."))
                .content_encoding("base64")
                .min_length(Some(4))
                .pattern(Some("^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")),
        )
        .required("package")
        .property("variables", variables());
    utoipa::openapi::schema::OneOfBuilder::new()
        .description(Some(
            "A script (`script`) or a signed package (`package`), not both; every other top-level key is a \
             parameter of the request (what `addParam` reads).",
        ))
        .item(with_script)
        .item(with_package)
        .into()
}

/// A script's source: not blank (a blank script is refused as empty).
fn script_property(example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The AVAP source: at least one statement (format `avap-script`: AVAP text that parses)."))
        .format(Some(utoipa::openapi::schema::SchemaFormat::Custom("avap-script".into())))
        .min_length(Some(1))
        .pattern(Some("\\S"))
        .examples([serde_json::Value::from(example)])
}

/// A script that ran to its end. The status is 200, or the script's own
/// `_status` (200 to 599).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ExecuteResponse {
    /// Always `true`.
    success: bool,
    /// What the script added with `addResult`.
    result: BTreeMap<String, Value>,
    /// Every variable at the end.
    variables: BTreeMap<String, Value>,
    /// One entry per command run, then what the guest wrote to stdout and stderr.
    logs: Vec<Value>,
    /// Present (and `true`) when the log was cut at its cap.
    logs_truncated: Option<bool>,
    usage: Usage,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Usage {
    /// Fuel the execution used.
    #[schema(minimum = 0)]
    fuel: u64,
    duration_ms: f64,
}

/// `POST /api/v1/compile`.
fn compile_request_schema() -> Schema {
    ObjectBuilder::new()
        .property("script", script_property("function twice(x) {\n  return x * 2\n}\ny = twice(21)\naddResult(y)"))
        .required("script")
        .property(
            "name",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some("A name for the package (default `script`), at most 100 characters."))
                .min_length(Some(1))
                .max_length(Some(100)),
        )
        .into()
}

/// A script that parses and validates, signed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CompileResponse {
    success: bool,
    name: String,
    /// Base64 of the signed package.
    package: String,
    /// Lowercase hex SHA-256 of the package.
    hash: String,
    diagnostics: Vec<Value>,
    /// The commands the script uses.
    commands: Vec<String>,
    /// The functions it defines.
    functions: Vec<String>,
    /// Whether the package was also stored in the compile store
    /// (`--compile-store`, the original servers' `avap_bytecode` table).
    stored: bool,
}

/// `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: String,
    /// Why not, when not ready.
    reason: Option<String>,
}

/// Every error body.
fn error_schema() -> Schema {
    let kinds: Vec<&str> =
        Outcome::ALL.iter().filter(|o| !matches!(o, Outcome::Ok | Outcome::Compiled)).map(|o| o.kind()).collect();
    ObjectBuilder::new()
        .property("success", ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([false])))
        .required("success")
        .property("error", ObjectBuilder::new().schema_type(Type::String).description(Some("What went wrong.")))
        .required("error")
        .property(
            "kind",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(kinds))
                .description(Some("Why, for programs (docs/WIRE.md, \"Errors\").")),
        )
        .required("kind")
        .property("line", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .property("diagnostics", ObjectBuilder::new().schema_type(SchemaType::Type(Type::Array)))
        .into()
}

fn json_response(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .header(crate::telemetry::REQUEST_ID_HEADER, request_id_header())
        .build()
}

/// Every response carries the request's id.
fn request_id_header() -> utoipa::openapi::Header {
    utoipa::openapi::HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(128)))
        .description(Some("The request's id: the client's own (1 to 128 visible ASCII), else a new UUID"))
        .build()
}

/// A success or an error: a script may set its own `_status`, so any
/// status of `execute` can carry either body.
fn success_or_error(success: &str) -> RefOr<Schema> {
    RefOr::T(utoipa::openapi::schema::OneOfBuilder::new().item(schema_ref(success)).item(schema_ref("Error")).into())
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// The error responses of a route: one per status its outcomes can have.
fn errors(outcomes: &[Outcome], body: &RefOr<Schema>) -> Vec<(String, utoipa::openapi::Response)> {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for o in outcomes {
        by_status.entry(o.status().as_u16()).or_default().push(o.kind());
    }
    by_status
        .into_iter()
        .map(|(status, kinds)| {
            (status.to_string(), json_response(&format!("kind: {}", kinds.join(", ")), body.clone()))
        })
        .collect()
}

/// Every way a request can fail ([`Outcome::ALL`] but the two successes),
/// less `except`.
fn failures(except: &[Outcome]) -> Vec<Outcome> {
    Outcome::ALL.into_iter().filter(|o| !matches!(o, Outcome::Ok | Outcome::Compiled) && !except.contains(o)).collect()
}

fn post(summary: &str, body: &str, ok: (&str, &str), outcomes: &[Outcome], default_success: bool) -> PathItem {
    // With a script's own `_status`, every status may carry a success.
    let error_body = if default_success { success_or_error(ok.1) } else { schema_ref("Error") };
    let mut responses = ResponsesBuilder::new().response("200", json_response(ok.0, schema_ref(ok.1)));
    for (status, response) in errors(outcomes, &error_body) {
        responses = responses.response(status, response);
    }
    if default_success {
        responses = responses.response(
            "default",
            json_response("a script that set its own `_status` (200 to 599)", success_or_error(ok.1)),
        );
    }
    let request = RequestBodyBuilder::new()
        .content("application/json", ContentBuilder::new().schema(Some(schema_ref(body))).build())
        .required(Some(Required::True))
        .build();
    let operation = OperationBuilder::new()
        .summary(Some(summary))
        .request_body(Some(request))
        .responses(responses.build())
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
        .security(SecurityRequirement::default())
        .build();
    PathItem::new(HttpMethod::Post, operation)
}

/// A GET route; `token`: whether it takes the bearer token.
fn get(summary: &str, token: bool, responses: Vec<(&str, utoipa::openapi::Response)>) -> PathItem {
    let mut builder = ResponsesBuilder::new();
    for (status, response) in responses {
        builder = builder.response(status, response);
    }
    // Every route: a browser's request from an origin not allowed, and (on
    // a host listening on loopback) a request for another name.
    builder = builder.response("403", json_response("kind: cross_origin", schema_ref("Error")));
    builder = builder.response("421", json_response("kind: misdirected_host", schema_ref("Error")));
    let mut operation = OperationBuilder::new().summary(Some(summary)).responses(builder.build());
    if token {
        operation = operation
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::default());
    }
    PathItem::new(HttpMethod::Get, operation.build())
}

/// A redirect: no body, a `Location`.
fn redirect(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .header(
            "Location",
            utoipa::openapi::HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("Where to go"))
                .build(),
        )
        .header(crate::telemetry::REQUEST_ID_HEADER, request_id_header())
        .build()
}

fn any_object(description: &str) -> utoipa::openapi::Response {
    json_response(description, RefOr::T(ObjectBuilder::new().into()))
}

/// The document.
pub fn document() -> OpenApi {
    // Only execute opens signed packages; only compile stores them.
    let execute_outcomes = failures(&[Outcome::Conflict]);
    let compile_outcomes = failures(&[Outcome::Integrity]);
    let text = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .header(crate::telemetry::REQUEST_ID_HEADER, request_id_header())
            .content(
                "application/openmetrics-text",
                ContentBuilder::new()
                    .schema(Some(RefOr::T(ObjectBuilder::new().schema_type(Type::String).into())))
                    .build(),
            )
            .build()
    };
    let paths = PathsBuilder::new()
        .path(
            "/api/v1/execute",
            post(
                "Run a script (or a signed package) in a fresh sandbox",
                "ExecuteRequest",
                ("the script ran", "ExecuteResponse"),
                &execute_outcomes,
                true,
            ),
        )
        .path(
            "/api/v1/compile",
            post(
                "Parse and validate a script; sign it as a package",
                "CompileRequest",
                ("the script is valid", "CompileResponse"),
                &compile_outcomes,
                false,
            ),
        )
        .path(
            "/health",
            get("The host's state: guest, catalog, definition server, trust, limits (only the status without a token when tokens are set)", true,
                vec![("200", any_object("the health document"))],
            ),
        )
        .path("/livez", get("Liveness: the process answers", false, vec![("200", json_response("alive", schema_ref("Readiness")))]))
        .path(
            "/readyz",
            get("Readiness: whether this host should get traffic", false,
                vec![
                    ("200", json_response("ready", schema_ref("Readiness"))),
                    ("503", json_response("not ready, and why", schema_ref("Readiness"))),
                ],
            ),
        )
        .path(
            "/metrics",
            get("Prometheus metrics (OpenMetrics text)", true,
                vec![("200", text("the metrics")), ("401", json_response("a token is needed", schema_ref("Error")))],
            ),
        )
        .path("/openapi.json", get("This document", false, vec![("200", any_object("OpenAPI 3.1"))]))
        .path(
            "/",
            get("Redirects to /health, as the original server did", false, vec![("301", redirect("to /health"))]),
        )
        .build();
    let components = ComponentsBuilder::new()
        .schema("ExecuteRequest", execute_request_schema())
        .schema("ExecuteResponse", ExecuteResponse::schema())
        .schema("Usage", Usage::schema())
        .schema("CompileRequest", compile_request_schema())
        .schema("CompileResponse", CompileResponse::schema())
        .schema("Readiness", Readiness::schema())
        .schema("Error", error_schema())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Needed when the host has AVAP_API_TOKENS"))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("AVAP host")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Runs AVAP scripts in a wasmtime sandbox. docs/WIRE.md describes every field."))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_json::to_value(document()).expect("the document serialises")
    }

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_route() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
        // The router's routes (api/mod.rs), every one.
        for route in ["/api/v1/execute", "/api/v1/compile", "/health", "/livez", "/readyz", "/metrics", "/openapi.json"]
        {
            assert!(paths.contains(&route), "{route} is not in the document: {paths:?}");
        }
        let router = include_str!("mod.rs");
        let routed = router.matches(".route(\"").count();
        assert_eq!(routed, paths.len(), "every .route( of the router is documented, and nothing else");
    }

    #[test]
    fn every_error_kind_and_its_status_is_documented() {
        let doc = doc();
        let kinds =
            doc["components"]["schemas"]["Error"]["properties"]["kind"]["enum"].as_array().expect("kinds").clone();
        for outcome in Outcome::ALL {
            let listed = kinds.iter().any(|k| k == outcome.kind());
            assert_eq!(listed, !matches!(outcome, Outcome::Ok | Outcome::Compiled), "{}", outcome.kind());
        }
        let execute = &doc["paths"]["/api/v1/execute"]["post"]["responses"];
        let compile = &doc["paths"]["/api/v1/compile"]["post"]["responses"];
        for outcome in Outcome::ALL.iter().filter(|o| !matches!(o, Outcome::Ok | Outcome::Compiled)) {
            let status = outcome.status().as_u16().to_string();
            let documented = execute.get(&status).is_some() || compile.get(&status).is_some();
            assert!(documented, "an API route can answer {status} ({}), undocumented", outcome.kind());
        }
        assert!(compile.get("409").is_some() && execute.get("409").is_none(), "only compile stores packages");
    }
}
