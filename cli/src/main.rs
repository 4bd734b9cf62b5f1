//! `avap`: write, check, test and run AVAP scripts locally.
//!
//! Scripts run in this process on the host's own code (`avap-host`'s
//! state, router, wasmtime sandbox and the guest module built into it), so
//! a script behaves here exactly as on the fleet ([`local`]). Checking,
//! formatting and the language server need only the parser (`avap-lang`).
//!
//! Exit codes: 0 success; 1 the script, check, test or verification failed;
//! 2 the command could not do its job (bad arguments, unreadable files, a
//! catalog folder with problems).

#![forbid(unsafe_code)]

mod check;
mod console;
mod dev;
mod local;
mod openapi;
mod pack;
mod precompile;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "avap", version, about = "Write, check, test and run AVAP scripts locally, in the host's own sandbox")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a script once and print the response JSON.
    ///
    /// The response goes to stdout (pretty on a terminal, compact
    /// otherwise), one line per command log to stderr. Exits 1 when the
    /// script fails (`"success": false`).
    Run(run::RunArgs),
    /// Report every problem of some scripts, as `file:line:col: message`.
    ///
    /// Errors (the script would be refused with `syntax_error`) exit 1;
    /// warnings (a call the host would answer `command not found`) do not,
    /// unless `--deny-warnings`.
    Check(check::CheckArgs),
    /// Run case folders (`script.avap` + `expected.json` [+ `request.json`]).
    ///
    /// DIR is one case folder or a tree of them (default: the current
    /// folder). Prints a line per case and `N passed, M failed`; a failing
    /// case shows how the response differs. Exits 1 when any case fails.
    Test(run::TestArgs),
    /// Rewrite scripts in the canonical layout.
    ///
    /// Indentation of blocks by 4 spaces, `, ` between arguments, `x = `
    /// for assignments; one output line per input line. `--check` changes
    /// nothing and exits 1 if a file would change. `-` reads stdin and
    /// writes stdout.
    Fmt(check::FmtArgs),
    /// Sign a script into a package that `POST /api/v1/execute` runs as
    /// `{"package": "<base64>"}`.
    Pack(pack::PackArgs),
    /// Check a package's signature offline, and show its script.
    Verify(pack::VerifyArgs),
    /// Compile a guest module for the hosts' engine and sign it with the
    /// release key: writes MODULE.cwasm and MODULE.cwasm.sig, which the
    /// brain serves beside the module so hosts need not compile it.
    ///
    /// Run it with the `avap` of the hosts' release on a machine with the
    /// hosts' CPU features: a host takes the artifact only for its own
    /// engine (and compiles the module otherwise).
    Precompile(precompile::PrecompileArgs),
    /// Start the host: the same server as `avap-host`, with its flags.
    ///
    /// Everything after `serve` is the host's own command line (`avap serve
    /// -- --help` lists it), e.g. `avap serve --dev --bind 127.0.0.1`.
    /// Exits 2 on a usage error.
    Serve {
        /// The host's flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve each `DIR/name.avap` at `POST /name`, reloaded on save.
    ///
    /// The request's query string and JSON body fields are the script's
    /// parameters, as with `/api/v1/execute`; each request reads the file
    /// as it is on disk, and every change is checked and reported here.
    /// Requests a web page of another site could send (by `Sec-Fetch-Site`,
    /// `Origin` and `Host`) are refused before anything runs. On loopback,
    /// `http://127.0.0.1:PORT/` in a browser is a console to edit, run and
    /// call the scripts.
    Dev(dev::DevArgs),
    /// The language server, over stdio (diagnostics, completion, hover,
    /// go-to-definition, symbols, formatting).
    Lsp {
        /// A catalog folder whose commands complete and hover like the
        /// standard ones.
        #[arg(long, value_name = "DIR")]
        catalog: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run::run(args))),
        Command::Check(args) => check::check(args),
        Command::Test(args) => runtime().and_then(|rt| rt.block_on(run::test(args))),
        Command::Fmt(args) => check::fmt(args),
        Command::Pack(args) => pack::pack(args),
        Command::Verify(args) => pack::verify(args),
        Command::Precompile(args) => runtime().and_then(|rt| rt.block_on(precompile::precompile(args))),
        Command::Serve { args } => serve(args),
        Command::Dev(args) => runtime().and_then(|rt| rt.block_on(dev::dev(args))),
        // The protocol's rule: 0 after shutdown and exit, 1 otherwise.
        Command::Lsp { catalog } => Ok(match avap_lang::lsp::run_stdio(catalog) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("avap lsp: {e}");
                ExitCode::FAILURE
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("avap: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// `avap serve ARGS`: `avap-host ARGS`.
fn serve(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let config =
        match <avap_host::Config as Parser>::try_parse_from(std::iter::once("avap serve".to_string()).chain(args)) {
            Ok(config) => config,
            Err(e) => {
                // --help and --version print and succeed; anything else is a usage error.
                let _ = e.print();
                return Ok(if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS });
            }
        };
    let rt = runtime()?;
    rt.block_on(async {
        let telemetry = avap_host::telemetry::init(config.log_format);
        let result = avap_host::run(config, avap_host::shutdown_signal()).await;
        telemetry.flush();
        result.map(|()| ExitCode::SUCCESS)
    })
}
