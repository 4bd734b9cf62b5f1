//! `avap precompile`: a guest module compiled ahead of time for the hosts'
//! engine, and signed by the release, so a host that takes it starts the
//! guest in milliseconds instead of compiling it (README, "Trust and
//! roll-out"; docs/WIRE.md, "The precompiled guest").
//!
//! The module is loaded exactly as a host loads it (the same code:
//! `avap-host`'s engine settings, the same instrumented form, the ABI
//! checks and the probe), then serialized. The signature binds the
//! artifact, the module, the form compiled and the engine's identity; a
//! host checks all four against its own before it uses a byte of it, and
//! compiles the module itself otherwise. The engine's identity includes the
//! CPU features the compiler uses: run this with the `avap` of the hosts'
//! release, on a machine of the hosts' kind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use avap_host::runtime::{Limits, SandboxEngine};
use avap_wire::guest_sig::{GuestSigningKey, dev_signing_key};

#[derive(clap::Args)]
pub struct PrecompileArgs {
    /// The guest module to precompile (e.g. guest-vm.wasm).
    module: PathBuf,
    /// The release's secret key file (`avap-brain keygen`): the key whose
    /// public half is in the hosts' AVAP_GUEST_KEYS.
    #[arg(long, value_name = "FILE", required_unless_present = "dev")]
    key: Option<PathBuf>,
    /// Sign with the published development key instead, which hosts trust
    /// only with --dev (for `avap-brain --dev` and local roll-outs).
    #[arg(long, conflicts_with = "key")]
    dev: bool,
    /// Where to write the artifact (default: the module's path with
    /// `.cwasm` for `.wasm`); its signature goes beside it, with `.sig`
    /// added.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn precompile(args: PrecompileArgs) -> anyhow::Result<ExitCode> {
    let key = match (&args.key, args.dev) {
        (Some(path), _) => signing_key(path)?,
        (None, false) => anyhow::bail!("give the release key (--key FILE), or --dev"),
        (None, true) => {
            eprintln!(
                "avap precompile: signing with the published development key: only hosts in --dev mode take this \
                 artifact"
            );
            dev_signing_key()
        }
    };
    let module = std::fs::read(&args.module).with_context(|| format!("cannot read {}", args.module.display()))?;
    anyhow::ensure!(module.starts_with(b"\0asm"), "{} is not a wasm binary module", args.module.display());
    // One execution slot: the probe's. The engine's settings are the host's.
    let engine = SandboxEngine::new(&Limits { max_concurrency: 1, ..Limits::default() })?;
    let precompiled = engine
        .precompile(&module)
        .await
        .with_context(|| format!("{} cannot be loaded as a guest", args.module.display()))?;
    let signature = key.sign_artifact(&precompiled.statement);
    let out = args.out.unwrap_or_else(|| args.module.with_extension("cwasm"));
    let mut sig_path = out.clone().into_os_string();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    write_replacing(&out, &precompiled.artifact)?;
    write_replacing(&sig_path, (serde_json::to_string_pretty(&signature)? + "\n").as_bytes())?;
    eprintln!(
        "guest {} ({}) precompiled for engine {}: {} ({} bytes) and {}, signed by key {}",
        precompiled.info.version,
        precompiled.info.digest,
        signature.engine,
        out.display(),
        precompiled.artifact.len(),
        sig_path.display(),
        signature.key,
    );
    Ok(ExitCode::SUCCESS)
}

fn signing_key(path: &Path) -> anyhow::Result<GuestSigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the key file {}", path.display()))?;
    GuestSigningKey::from_hex(&text).with_context(|| format!("{} is not a guest signing key", path.display()))
}

/// Writes `bytes` to `path` through a file beside it, renamed over it: a
/// reader (the brain's folder scan) sees the old file or the new one.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
