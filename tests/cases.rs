//! The case folders through the real host: one test per folder of
//! `cases/language/` and `cases/capability/`, each a real HTTP request to a
//! real `avap-host` on 127.0.0.1:0 running the real guest in wasmtime.
//!
//! A folder holds `script.avap`, `expected.json` (`status` and `body`) and
//! optionally `request.json` (`variables`, `query`, `params`); the format
//! and what is compared exactly are in the crate docs (`lib.rs`): the
//! status and the whole `result` are exact, the other listed fields of the
//! body are contained (`~text` matches a string containing `text`).
//!
//! - `language/` cases share one host that grants no capability, so a case
//!   that reached for HTTP or a database would fail here (and in the
//!   interpreter's own run of these folders, `guest-vm/tests/cases.rs`).
//! - Each `capability/` case gets a host of its own, granted HTTP to a
//!   local upstream service (its base URL is the variable `svc`, and
//!   `{svc}` in expected strings) and PostgreSQL in a fresh schema and role
//!   of its own (dropped after the case), so no case sees another's rows.
//! - `[comparison]` tests check the comparison itself: an extra, missing or
//!   reordered `result` key, or `25.0` for `25`, fails.
//!
//! Run one case by its name: `cargo test -p avap-tests --test cases --
//! cmd_ormdirect` (a filter that is a whole case name runs that case
//! alone; any other filter runs every test whose name contains it, such as
//! `-- cmd_ormdirect_` or the group, `-- capability`). `-- --list` lists
//! every test.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use avap_host::Config;
use avap_tests::case::{self, Case};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

#[path = "common/mod.rs"]
mod common;

use common::{Server, config, fixtures};

const GROUPS: [&str; 2] = ["language", "capability"];

fn main() {
    let mut args = Arguments::from_args();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime"),
    );
    let language_host = Arc::new(OnceLock::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut trials = Vec::new();
    for group in GROUPS {
        let dirs = match case::folders(&root.join(group)) {
            Ok(dirs) if dirs.is_empty() => Err(format!("no case folders in cases/{group}")),
            other => other,
        };
        let dirs = match dirs {
            Ok(dirs) => dirs,
            Err(e) => {
                trials.push(Trial::test(format!("{group}_folders"), move || Err(e.into())).with_kind(group));
                continue;
            }
        };
        for dir in dirs {
            let (runtime, language_host) = (runtime.clone(), language_host.clone());
            let trial = Trial::test(case::name_of(&dir), move || {
                let case = Case::load(&dir)?;
                match group {
                    "language" => run_language(&runtime, &language_host, &case),
                    _ => run_capability(&runtime, &case),
                }
            });
            trials.push(trial.with_kind(group));
        }
    }
    trials.extend(comparison_checks());
    // A filter that is a case's whole name runs that case alone: without
    // this, `cmd_ormdirect` would also run `cmd_ormdirect_errors` and
    // `cmd_ormdirect_injection`.
    args.exact |= args.filter.as_ref().is_some_and(|f| trials.iter().any(|t| t.name() == f));
    // Exits at once: the shared host and the runtime are not torn down (a
    // capability case drops its schema when it ends).
    libtest_mimic::run(&args, trials).exit();
}

/// The comparison itself: a `result` that differs from the expected one in
/// any way fails, whatever else matches.
fn comparison_checks() -> Vec<Trial> {
    let case = |result: Value| Case {
        name: "check".into(),
        script: String::new(),
        request: Default::default(),
        expected: case::Expected {
            status: 200,
            body: json!({"success": true, "result": result}).as_object().cloned().unwrap_or_default(),
        },
    };
    let response = |result: Value| json!({"success": true, "result": result, "variables": {}, "logs": []});
    let checks: [(&str, Value, Value, bool); 8] = [
        ("the_same_result_passes", json!({"a": 1, "b": [1.5]}), json!({"a": 1, "b": [1.5]}), true),
        ("an_extra_result_fails", json!({"a": 1}), json!({"a": 1, "b": 2}), false),
        ("a_missing_result_fails", json!({"a": 1, "b": 2}), json!({"a": 1}), false),
        ("results_in_another_order_fail", json!({"a": 1, "b": 2}), json!({"b": 2, "a": 1}), false),
        ("an_extra_key_deep_down_fails", json!({"d": {"k": 1}}), json!({"d": {"k": 1, "j": 2}}), false),
        ("a_float_is_not_an_int", json!({"a": 25}), json!({"a": 25.0}), false),
        ("a_tilde_in_a_result_is_text", json!({"e": "~oops"}), json!({"e": "it went oops"}), false),
        ("svc_stands_for_the_upstream", json!({"u": "{svc}/x"}), json!({"u": "http://127.0.0.1:9/x"}), true),
    ];
    checks
        .into_iter()
        .map(|(name, expected, actual, passes)| {
            Trial::test(name, move || {
                let outcome = case(expected.clone()).check(200, &response(actual.clone()), Some("http://127.0.0.1:9"));
                match (outcome, passes) {
                    (Ok(()), true) | (Err(_), false) => Ok(()),
                    (Ok(()), false) => Err(format!("{actual} passed for {expected}").into()),
                    (Err(e), true) => Err(e.into()),
                }
            })
            .with_kind("comparison")
        })
        .collect()
}

/// One host for every language case, granting no capability; started by
/// the first case that needs it.
fn run_language(runtime: &tokio::runtime::Runtime, host: &OnceLock<Server>, case: &Case) -> Result<(), Failed> {
    let server = host.get_or_init(|| runtime.block_on(Server::start(config(|c| c.capabilities = Default::default()))));
    let (status, body, _) = runtime.block_on(server.post(&case.path_and_query(), case.request_body(None)));
    case.check(status, &body, None).map_err(Failed::from)
}

/// A host, an upstream service and a database schema of the case's own.
fn run_capability(runtime: &tokio::runtime::Runtime, case: &Case) -> Result<(), Failed> {
    runtime.block_on(async {
        let upstream = fixtures::Upstream::start().await;
        let schema = fixtures::PgSchema::create().await;
        let server = Server::start(capability_config(&upstream, &schema)).await;
        let (status, body, _) = server.post(&case.path_and_query(), case.request_body(Some(&upstream.base))).await;
        case.check(status, &body, Some(&upstream.base)).map_err(Failed::from)
    })
}

/// Both capabilities with small caps: `upstream` allow-listed, the database
/// in `schema`.
fn capability_config(upstream: &fixtures::Upstream, schema: &fixtures::PgSchema) -> Config {
    config(|c| {
        c.http_allow = upstream.authority.parse().expect("allow-list");
        c.http_timeout_ms = 500;
        c.http_max_response_bytes = 64 << 10;
        c.http_max_requests = 5;
        c.db_url = schema.url();
        c.db_statement_timeout_ms = 300;
        c.db_max_rows = 50;
        c.timeout_ms = 3000;
    })
}
