//! `avap pack` and `avap verify`: signed packages (docs/WIRE.md, section 1)
//! built and checked offline with the secret a host uses.
//!
//! The secret is read from the environment variable `--key-env` names
//! (never from the command line, where `ps` and shell history would show
//! it), and is held to the host's rules: at least 32 bytes and not the
//! published default, unless `--scheme original` (the original servers
//! sign with the published key; said on stderr) or `--allow-weak-key`.
//!
//! - `--scheme separated` (default): what this project's host makes in
//!   `POST /api/v1/compile` and accepts in `execute`: signed with the
//!   secret's `compiled-package` key.
//! - `--scheme original`: signed with the secret itself, as the original
//!   servers sign; this host accepts those only with `--original-servers`.
//!
//! `verify` accepts what a host in the scheme accepts: under `separated`
//! the compiled-package key, under `original` that key or the secret.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use avap_lang::diagnostics::{Severity, diagnose, render};
use avap_lang::reference::Commands;
use avap_wire::keys::{KeyScheme, Keys, MIN_SECRET_BYTES, WeakKey, weak_key};
use base64::Engine as _;
use sha2::Digest as _;

use crate::run::read_capped;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// This project's: the secret's `compiled-package` key.
    Separated,
    /// The original servers': the secret itself.
    Original,
}

#[derive(clap::Args)]
pub struct KeyArgs {
    /// The environment variable that holds the secret (`AVAP_INTERNAL_KEY`
    /// on a host).
    #[arg(long, value_name = "NAME")]
    pub key_env: String,
    #[arg(long, value_enum, default_value = "separated")]
    pub scheme: Scheme,
    /// Take a short or published secret (for tests only; said on stderr).
    #[arg(long)]
    pub allow_weak_key: bool,
}

#[derive(clap::Args)]
pub struct PackArgs {
    /// The script to sign; it must have no syntax error.
    pub file: PathBuf,
    /// Where to write the package (default: the script's path with
    /// `.pkg`; `-`: its base64 on stdout, what `execute` takes as
    /// `{"package": ...}`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The package: its bytes, or their base64.
    pub package: PathBuf,
    /// Print the script inside to stdout once verified.
    #[arg(long)]
    pub print: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

fn keys(args: &KeyArgs) -> anyhow::Result<Keys> {
    let secret = std::env::var(&args.key_env)
        .map_err(|_| anyhow!("--key-env {}: that environment variable is not set (or not UTF-8)", args.key_env))?;
    if secret.is_empty() {
        bail!("--key-env {}: the variable is empty", args.key_env);
    }
    let original = args.scheme == Scheme::Original;
    match weak_key(&secret, avap_wire::auth::DEFAULT_INTERNAL_KEY, MIN_SECRET_BYTES) {
        Some(weak) if !(original || args.allow_weak_key) => {
            let why = match weak {
                WeakKey::Published => "is the published default".to_string(),
                WeakKey::Short { len, min } => format!("has {len} bytes, fewer than {min}"),
            };
            bail!(
                "the secret in {} {why}: anyone could sign packages with it (--allow-weak-key takes it anyway)",
                args.key_env
            )
        }
        Some(_) => eprintln!("avap: warning: the secret in {} is weak (published or short)", args.key_env),
        None => {}
    }
    let scheme = if original { KeyScheme::Original } else { KeyScheme::Separated };
    Ok(Keys::new(secret.as_bytes(), scheme))
}

/// The key a package is signed with under `scheme`.
fn signing_key(keys: &Keys, scheme: Scheme) -> Vec<u8> {
    match scheme {
        Scheme::Separated => keys.package().to_vec(),
        // Under the original scheme the catalog-entry key is the secret.
        Scheme::Original => keys.catalog_entry().to_vec(),
    }
}

pub fn pack(args: PackArgs) -> anyhow::Result<ExitCode> {
    let keys = keys(&args.key)?;
    let script = read_capped(&args.file)?;
    let name = args.file.display().to_string();
    let errors: Vec<_> =
        diagnose(&script, &Commands::standard()).into_iter().filter(|d| d.severity == Severity::Error).collect();
    if !errors.is_empty() {
        for d in &errors {
            eprint!("{}", render(&name, &script, d));
        }
        eprintln!("avap: {name}: not packed: a host would refuse it");
        return Ok(ExitCode::FAILURE);
    }
    let package = avap_wire::package::pack(&signing_key(&keys, args.key.scheme), script.as_bytes())?;
    let hash = hex::encode(sha2::Sha256::digest(&package));
    let out = match args.out {
        Some(out) => out,
        None if args.file.as_os_str() == "-" => bail!("a script from stdin needs -o FILE (or -o - for base64)"),
        None => args.file.with_extension("pkg"),
    };
    if out.as_os_str() == "-" {
        println!("{}", base64::engine::general_purpose::STANDARD.encode(&package));
    } else {
        std::fs::write(&out, &package).with_context(|| format!("cannot write {}", out.display()))?;
        println!("packed {name} -> {} ({} bytes, sha256 {hash})", out.display(), package.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The package's bytes from a file holding them or their base64.
fn package_bytes(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(&avap_wire::package::MAGIC) {
        return Ok(bytes);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("{}: neither a package nor base64", path.display()))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| anyhow!("{}: neither a package nor base64 ({e})", path.display()))
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = keys(&args.key)?;
    let package = package_bytes(&args.package)?;
    let name = args.package.display();
    // What a host in that scheme accepts: its compiled-package key, and
    // under the original scheme also the secret itself.
    let mut verified = Err(avap_wire::package::PackageError::BadSignature);
    for key in keys.packages_accepted() {
        verified = avap_wire::package::verify(key, &package);
        if verified.is_ok() {
            break;
        }
    }
    let payload = match verified {
        Ok(payload) => payload,
        Err(e) => {
            eprintln!("avap: {name}: refused: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let hash = hex::encode(sha2::Sha256::digest(&package));
    let Ok(script) = std::str::from_utf8(payload) else {
        eprintln!("avap: {name}: the signature is good but the payload is not UTF-8 AVAP source");
        return Ok(ExitCode::FAILURE);
    };
    eprintln!("avap: {name}: signature ok ({} bytes of script, package sha256 {hash})", payload.len());
    if args.print {
        print!("{script}");
    }
    Ok(ExitCode::SUCCESS)
}
