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
//!
//! Run one case: `cargo test -p avap-tests --test cases -- --exact
//! cmd_ormdirect` (without `--exact`, every case whose name contains the
//! text; `-- capability` runs a group; `-- --list` lists them).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use avap_host::Config;
use avap_tests::case::{self, Case};
use libtest_mimic::{Arguments, Failed, Trial};

#[path = "common/mod.rs"]
mod common;

use common::{Server, config, fixtures};

const GROUPS: [&str; 2] = ["language", "capability"];

fn main() {
    let args = Arguments::from_args();
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
    // Exits at once: the shared host and the runtime are not torn down (a
    // capability case drops its schema when it ends).
    libtest_mimic::run(&args, trials).exit();
}

/// One host for every language case, granting no capability; started by
/// the first case that needs it.
fn run_language(runtime: &tokio::runtime::Runtime, host: &OnceLock<Server>, case: &Case) -> Result<(), Failed> {
    let server = host.get_or_init(|| runtime.block_on(Server::start(config(|c| c.capabilities = String::new()))));
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
        c.http_allow = upstream.authority.clone();
        c.http_timeout_ms = 500;
        c.http_max_response_bytes = 64 << 10;
        c.http_max_requests = 5;
        c.db_url = schema.url();
        c.db_statement_timeout_ms = 300;
        c.db_max_rows = 50;
        c.timeout_ms = 3000;
    })
}
