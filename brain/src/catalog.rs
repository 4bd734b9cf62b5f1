//! Building the catalog: the standard commands, the catalog folder's
//! commands written in AVAP, and the guest module, each entry's payload in a
//! signed package.
//!
//! Entry order on the wire: the 27 standard commands in reference order, the
//! folder's `.avap` commands sorted by name, the guest module, then the
//! signed manifest (added by [`crate::Brain`] when it publishes, see
//! [`seal`]).
//!
//! Entries are signed with the catalog-entry key ([`Keys::catalog_entry`]).
//! The guest entry also carries an Ed25519 signature in its
//! `interface_json` ([`avap_wire::guest_sig`]): from `guest-vm.wasm.sig`
//! beside the module (what `avap-brain sign-guest` writes, so the brain needs
//! no private key), or made with the brain's own signing key. A guest with
//! neither is not published: a folder's `guest-vm.wasm` without a signature
//! is an error, and without a key the built-in module is left out (hosts
//! keep their own). A `.sig` is checked against the module before anything
//! is published ([`CatalogError::GuestPairMismatch`]): a module copied in
//! before its signature (or after it) is a pair that does not match yet,
//! and the previous catalog stays until it does.
//!
//! Beside the module, the folder may hold the release's precompiled guest:
//! `guest-vm.cwasm` and its `guest-vm.cwasm.sig`, as `avap precompile`
//! writes them (the brain cannot compile: it has no wasmtime, and must not
//! be able to ship code of its own). It is published as one more entry,
//! `avap-guest-vm-artifact`, its signature in the `interface_json`, sealed
//! by the manifest like every entry. The same pair rule holds: an artifact
//! without its `.sig`, a `.sig` without its artifact, or a pair that is not
//! of the module being published waits, and the previous catalog stays.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use avap_guest_vm::Diagnostic;
use avap_wire::catalog::{
    GUEST_ARTIFACT_ENTRY, GUEST_VM_ENTRY, TYPE_AVAP, TYPE_FUNCTION, TYPE_GUEST_ARTIFACT, TYPE_GUEST_VM, version_hash,
};
use avap_wire::guest_sig::{
    ArtifactError, ArtifactSignatureFile, GuestSigError, GuestSignature, GuestSigningKey, SignatureFile,
};
use avap_wire::keys::Keys;
use avap_wire::manifest::{GuestPin, Manifest};
use avap_wire::package::PackageError;
use avap_wire::pb::{CatalogResponse, CommandResponse};
use serde::Deserialize;
use sha2::Digest as _;

/// The spec's reference data for the standard commands (a vendored copy of
/// `shared/spec/commands-reference.json`).
static REFERENCE: &str = include_str!("../catalog/commands-reference.json");

/// The file in the catalog folder that replaces the built-in guest module.
pub const GUEST_WASM_FILE: &str = "guest-vm.wasm";
/// The extension of catalog commands written in AVAP.
pub const AVAP_EXTENSION: &str = "avap";
/// Largest `.avap` source the folder may hold.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
/// Largest `guest-vm.wasm` the folder may hold (hosts refuse a module over
/// their `AVAP_MAX_GUEST_MODULE_BYTES`, 16 MiB by default).
pub const MAX_WASM_BYTES: u64 = 16 << 20;
/// The signature of `guest-vm.wasm`, as `avap-brain sign-guest` writes it.
pub const GUEST_SIG_FILE: &str = "guest-vm.wasm.sig";
/// The guest module precompiled for the hosts' engine (`avap precompile`).
pub const GUEST_ARTIFACT_FILE: &str = "guest-vm.cwasm";
/// Its signature, as `avap precompile` writes it.
pub const GUEST_ARTIFACT_SIG_FILE: &str = "guest-vm.cwasm.sig";
/// Largest `guest-vm.cwasm` the folder may hold (the guest's compiled code
/// is a few times its module; hosts cap the whole catalog message at
/// `AVAP_BRAIN_MAX_MESSAGE_BYTES`, 32 MiB by default).
pub const MAX_ARTIFACT_BYTES: u64 = 64 << 20;
/// The staged roll-out of the folder's guest: `{"percent": 0..=100}`.
pub const ROLLOUT_FILE: &str = "rollout.json";
/// Largest `.sig` or `rollout.json` file.
const MAX_SMALL_FILE_BYTES: u64 = 4096;

/// Why a catalog could not be built. Folder problems name the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {size} bytes, over the {limit}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: the file name is not a command name (expected <name>.avap)", path.display())]
    BadFileName { path: PathBuf },
    #[error("{}: invalid AVAP command `{name}`: {}", path.display(), Diagnostics(diagnostics))]
    Invalid { path: PathBuf, name: String, diagnostics: Vec<Diagnostic> },
    #[error("{}: command `{name}` is already in the catalog", path.display())]
    Duplicate { path: PathBuf, name: String },
    #[error("{}: not a wasm module (it must start with \\0asm)", path.display())]
    NotWasm { path: PathBuf },
    #[error("{}: the guest module is not signed: add {GUEST_SIG_FILE} (avap-brain sign-guest) or give the brain AVAP_GUEST_SIGNING_KEY_FILE", path.display())]
    Unsigned { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    /// The folder's module and its `.sig` do not belong together (yet): a
    /// roll-out copying one after the other, or a stale signature.
    #[error(
        "{}: the signature is not of {GUEST_WASM_FILE} as it is now ({reason}); waiting for the pair to match \
         (copy the module and its .sig together, or sign the module again)",
        path.display()
    )]
    GuestPairMismatch { path: PathBuf, reason: String },
    /// The folder's precompiled guest is not (yet) of the module being
    /// published, or half of its pair is missing: a roll-out copying files.
    #[error(
        "{}: {reason}; waiting for the precompiled guest to match the module (copy guest-vm.cwasm and its .sig \
         with the module, or run avap precompile on the module again)",
        path.display()
    )]
    ArtifactPairMismatch { path: PathBuf, reason: String },
    #[error("the vendored commands reference is invalid: {0}")]
    Reference(String),
    #[error("cannot sign a catalog entry: {0}")]
    Package(#[from] PackageError),
}

impl CatalogError {
    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CatalogError::Read { path, .. }
            | CatalogError::TooLarge { path, .. }
            | CatalogError::NotUtf8 { path }
            | CatalogError::BadFileName { path }
            | CatalogError::Invalid { path, .. }
            | CatalogError::Duplicate { path, .. }
            | CatalogError::NotWasm { path }
            | CatalogError::Unsigned { path }
            | CatalogError::BadFile { path, .. }
            | CatalogError::GuestPairMismatch { path, .. }
            | CatalogError::ArtifactPairMismatch { path, .. } => Some(path),
            CatalogError::Reference(_) | CatalogError::Package(_) => None,
        }
    }

    /// Whether this is a state a folder passes through while an operator
    /// copies files in ([`CatalogError::GuestPairMismatch`],
    /// [`CatalogError::ArtifactPairMismatch`]), rather than a mistake to
    /// report at once.
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::GuestPairMismatch { .. } | CatalogError::ArtifactPairMismatch { .. })
    }
}

struct Diagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Reference {
    commands: Vec<ReferenceCommand>,
}

#[derive(Deserialize)]
struct ReferenceCommand {
    name: String,
    parameters: Vec<ReferenceParam>,
}

#[derive(Deserialize)]
struct ReferenceParam {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `[{"item": <name>, "type": <kind>}, ...]`, compact.
fn interface_json<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let list: Vec<serde_json::Value> =
        params.into_iter().map(|(item, kind)| serde_json::json!({"item": item, "type": kind})).collect();
    serde_json::Value::Array(list).to_string()
}

fn entry(
    keys: &Keys,
    name: &str,
    kind: &str,
    interface_json: String,
    payload: &[u8],
) -> Result<CommandResponse, CatalogError> {
    Ok(avap_wire::catalog::signed_entry(keys.catalog_entry(), name, kind, interface_json, payload)?)
}

/// The 27 standard commands, type `function`: each payload is the
/// command's Python implementation for the original language servers
/// ([`crate::python`]); AVAP hosts use only the name and the interface.
pub fn standard_entries(keys: &Keys) -> Result<Vec<CommandResponse>, CatalogError> {
    let reference: Reference = serde_json::from_str(REFERENCE).map_err(|e| CatalogError::Reference(e.to_string()))?;
    reference
        .commands
        .iter()
        .map(|c| {
            let interface = interface_json(c.parameters.iter().map(|p| (p.name.as_str(), p.kind.as_str())));
            let python = crate::python::source(&c.name)
                .ok_or_else(|| CatalogError::Reference(format!("no Python implementation of `{}`", c.name)))?;
            entry(keys, &c.name, TYPE_FUNCTION, interface, python.as_bytes())
        })
        .collect()
}

/// Reads a file of at most `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, CatalogError> {
    let read_err = |source| CatalogError::Read { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // One byte over the limit tells "too large" apart from "exactly at it".
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read_err)?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(CatalogError::TooLarge { path: path.to_path_buf(), size, limit });
    }
    Ok(bytes)
}

/// One command written in AVAP: `<name>.avap` holding `function <name>(...)`.
fn avap_entry(keys: &Keys, path: &Path) -> Result<CommandResponse, CatalogError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CatalogError::BadFileName { path: path.to_path_buf() })?;
    let bytes = read_capped(path, MAX_SOURCE_BYTES)?;
    let source = String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 { path: path.to_path_buf() })?;
    let params = avap_guest_vm::check_catalog_function(name, &source).map_err(|diagnostics| CatalogError::Invalid {
        path: path.to_path_buf(),
        name: name.to_string(),
        diagnostics,
    })?;
    let interface = interface_json(params.iter().map(|p| (p.as_str(), "value")));
    entry(keys, name, TYPE_AVAP, interface, source.as_bytes())
}

fn guest_wasm(path: &Path) -> Result<Vec<u8>, CatalogError> {
    let bytes = read_capped(path, MAX_WASM_BYTES)?;
    if !bytes.starts_with(b"\0asm") {
        return Err(CatalogError::NotWasm { path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// The relevant files of a catalog folder, sorted by name: `*.avap` files
/// and `guest-vm.wasm` (symbolic links followed; everything else ignored).
fn folder_files(folder: &Path) -> Result<Vec<(OsString, PathBuf, fs::Metadata)>, CatalogError> {
    let read_err = |source| CatalogError::Read { path: folder.to_path_buf(), source };
    let mut files = Vec::new();
    for dirent in fs::read_dir(folder).map_err(read_err)? {
        let dirent = dirent.map_err(read_err)?;
        let path = dirent.path();
        let name = dirent.file_name();
        let relevant = name == GUEST_WASM_FILE
            || name == GUEST_SIG_FILE
            || name == GUEST_ARTIFACT_FILE
            || name == GUEST_ARTIFACT_SIG_FILE
            || name == ROLLOUT_FILE
            || path.extension().is_some_and(|e| e == AVAP_EXTENSION);
        if !relevant {
            continue;
        }
        // A file that vanishes between listing and stat is simply not there.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CatalogError::Read { path, source }),
        };
        if meta.is_file() {
            files.push((name, path, meta));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// A catalog as built from the folder, before the brain seals it with a
/// manifest and a serial ([`seal`]).
#[derive(Debug, Clone)]
pub struct Built {
    pub commands: Vec<CommandResponse>,
    /// [`version_hash`] of `commands`: what tells one build from another.
    pub content_hash: String,
    pub guest: Option<GuestPin>,
    /// The guest entry's `interface_json` (its signature). Part of
    /// `content_hash` like every entry's interface: a re-signed module (key
    /// rotation) is a new catalog though its bytes are the same.
    pub guest_signature: Option<String>,
}

/// How the brain signs what it builds.
pub struct Signer<'a> {
    pub keys: &'a Keys,
    /// Signs guest modules that have no `.sig` file (`None`: only signed
    /// modules are published).
    pub guest_key: Option<&'a GuestSigningKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollout {
    percent: u8,
}

/// The guest version a module declares (its `avap-guest-version=` record),
/// if it has one.
pub fn declared_version(module: &[u8]) -> Option<String> {
    let prefix = avap_guest_vm::GUEST_VERSION_PREFIX.as_bytes();
    let at = module.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let rest = &module[at..];
    // The record is followed by other data: take `MAJOR.MINOR.PATCH`, and a
    // pre-release or build suffix only when one is marked and parses.
    let mut core = 0;
    for part in 0..3 {
        let digits = rest[core..].iter().take(20).take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        core += digits;
        if part < 2 {
            if rest.get(core) != Some(&b'.') {
                return None;
            }
            core += 1;
        }
    }
    let core_text = std::str::from_utf8(&rest[..core]).ok()?;
    if matches!(rest.get(core), Some(b'-' | b'+')) {
        let len = rest[core..].iter().take(64).take_while(|b| b.is_ascii_alphanumeric() || b".-+".contains(b)).count();
        if let Ok(full) = std::str::from_utf8(&rest[..core + len])
            && semver::Version::parse(full).is_ok()
        {
            return Some(full.to_string());
        }
    }
    semver::Version::parse(core_text).ok().map(|_| core_text.to_string())
}

fn small_file(path: &Path) -> Result<String, CatalogError> {
    let bytes = read_capped(path, MAX_SMALL_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 { path: path.to_path_buf() })
}

/// Builds the whole catalog. `folder: None` is the built-in default.
/// `Err` lists every problem found (the catalog is then not usable at all).
pub fn build(signer: &Signer<'_>, folder: Option<&Path>) -> Result<Built, Vec<CatalogError>> {
    let keys = signer.keys;
    let mut commands = standard_entries(keys).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut guest: Option<(PathBuf, Vec<u8>)> = None;
    let mut guest_sig: Option<(PathBuf, String)> = None;
    let mut artifact: Option<(PathBuf, Vec<u8>)> = None;
    let mut artifact_sig: Option<(PathBuf, String)> = None;
    let mut percent = 100;
    if let Some(folder) = folder {
        let files = folder_files(folder).map_err(|e| vec![e])?;
        for (name, path, _) in files {
            if name == GUEST_WASM_FILE {
                match guest_wasm(&path) {
                    Ok(bytes) => guest = Some((path, bytes)),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            if name == GUEST_SIG_FILE {
                match small_file(&path) {
                    Ok(text) => guest_sig = Some((path, text)),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            if name == GUEST_ARTIFACT_FILE {
                match read_capped(&path, MAX_ARTIFACT_BYTES) {
                    Ok(bytes) => artifact = Some((path, bytes)),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            if name == GUEST_ARTIFACT_SIG_FILE {
                match small_file(&path) {
                    Ok(text) => artifact_sig = Some((path, text)),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            if name == ROLLOUT_FILE {
                let parsed = small_file(&path).and_then(|text| {
                    serde_json::from_str::<Rollout>(&text)
                        .map_err(|e| e.to_string())
                        .and_then(|r| if r.percent <= 100 { Ok(r.percent) } else { Err("percent over 100".into()) })
                        .map_err(|reason| CatalogError::BadFile {
                            path: path.clone(),
                            reason: format!("expected {{\"percent\": 0..100}}: {reason}"),
                        })
                });
                match parsed {
                    Ok(p) => percent = p,
                    Err(e) => errors.push(e),
                }
                continue;
            }
            match avap_entry(keys, &path) {
                Ok(e) if commands.iter().any(|c| c.name == e.name) => {
                    errors.push(CatalogError::Duplicate { path, name: e.name })
                }
                Ok(e) => commands.push(e),
                Err(e) => errors.push(e),
            }
        }
    }
    let known: Vec<_> = signer.guest_key.map(GuestSigningKey::public).into_iter().collect();
    let signature = match (&guest, guest_sig, signer.guest_key) {
        (Some((_, bytes)), Some((path, text)), _) => match serde_json::from_str::<SignatureFile>(&text) {
            Err(e) => {
                errors.push(CatalogError::BadFile { path, reason: format!("not a guest signature: {e}") });
                None
            }
            Ok(file) => match file.check(bytes, &known) {
                Ok(sig) => Some(sig),
                Err(GuestSigError::BadSignature(_)) => {
                    errors.push(CatalogError::GuestPairMismatch { path, reason: "it does not verify".into() });
                    None
                }
                Err(GuestSigError::UnknownKey(key)) => {
                    errors.push(CatalogError::BadFile {
                        path,
                        reason: format!(
                            "signed by key {key}, and the file carries no public key to check it with: sign the \
                             module again with this version's `avap-brain sign-guest` (its .sig carries the public \
                             key), or give the brain that key as --guest-signing-key"
                        ),
                    });
                    None
                }
                Err(e) => {
                    errors.push(CatalogError::BadFile { path, reason: e.to_string() });
                    None
                }
            },
        },
        (Some((_, bytes)), None, Some(key)) => Some(key.sign(bytes)),
        (Some((path, _)), None, None) => {
            errors.push(CatalogError::Unsigned { path: path.clone() });
            None
        }
        (None, _, Some(key)) => Some(key.sign(avap_guest_embed::GUEST_WASM)),
        (None, _, None) => None,
    };
    let mut pin = None;
    let guest_signature = signature.as_ref().map(GuestSignature::to_interface_json);
    if let Some(signature) = signature {
        let bytes = guest.as_ref().map_or(avap_guest_embed::GUEST_WASM, |(_, b)| b.as_slice());
        match entry(keys, GUEST_VM_ENTRY, TYPE_GUEST_VM, signature.to_interface_json(), bytes) {
            Ok(e) => commands.push(e),
            Err(e) => errors.push(e),
        }
        pin = Some(GuestPin {
            version: declared_version(bytes).unwrap_or_default(),
            digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
            rollout_percent: percent,
        });
        match artifact_entry(keys, bytes, artifact.take(), artifact_sig.take()) {
            Ok(Some(e)) => commands.push(e),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    // An artifact with no module to publish it beside.
    if let Some((path, _)) = artifact.or(artifact_sig.map(|(path, _)| (path, Vec::new()))) {
        errors.push(CatalogError::BadFile {
            path,
            reason: "a precompiled guest, and no guest module is published (add guest-vm.wasm and its .sig)".into(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let content_hash = version_hash(&commands);
    Ok(Built { commands, content_hash, guest: pin, guest_signature })
}

/// The precompiled guest's entry, if the folder holds one: `guest-vm.cwasm`
/// and its `.sig`, which must be of `module` (the module being published).
fn artifact_entry(
    keys: &Keys,
    module: &[u8],
    artifact: Option<(PathBuf, Vec<u8>)>,
    sig: Option<(PathBuf, String)>,
) -> Result<Option<CommandResponse>, CatalogError> {
    let waiting = |path: PathBuf, reason: &str| CatalogError::ArtifactPairMismatch { path, reason: reason.to_string() };
    let ((_, bytes), (sig_path, text)) = match (artifact, sig) {
        (None, None) => return Ok(None),
        (Some((path, _)), None) => return Err(waiting(path, "there is no guest-vm.cwasm.sig beside it")),
        (None, Some((path, _))) => return Err(waiting(path, "there is no guest-vm.cwasm beside it")),
        (Some(artifact), Some(sig)) => (artifact, sig),
    };
    let file: ArtifactSignatureFile = serde_json::from_str(&text).map_err(|e| CatalogError::BadFile {
        path: sig_path.clone(),
        reason: format!("not a precompiled guest's signature (avap precompile): {e}"),
    })?;
    let claim = match file.check(&bytes, module) {
        Ok(claim) => claim,
        Err(ArtifactError::OtherModule { .. }) => {
            return Err(waiting(sig_path, "the precompiled guest is of another module"));
        }
        Err(ArtifactError::Signature(GuestSigError::BadSignature(_))) => {
            return Err(waiting(sig_path, "the signature does not verify for guest-vm.cwasm as it is now"));
        }
        Err(e) => return Err(CatalogError::BadFile { path: sig_path, reason: e.to_string() }),
    };
    entry(keys, GUEST_ARTIFACT_ENTRY, TYPE_GUEST_ARTIFACT, claim.to_interface_json(), &bytes).map(Some)
}

/// How long a manifest sealed with [`seal`] is valid.
pub const DEFAULT_MANIFEST_TTL: Duration = Duration::from_secs(3600);

/// [`seal_until`] with an expiry [`DEFAULT_MANIFEST_TTL`] from now: for a
/// catalog applied at once (`avap dev`, tests), not one served for long.
pub fn seal(keys: &Keys, built: &Built, serial: u64, issued_at: String) -> Result<CatalogResponse, CatalogError> {
    let ttl = u64::try_from(DEFAULT_MANIFEST_TTL.as_millis()).unwrap_or(u64::MAX);
    seal_until(keys, built, serial, issued_at, avap_wire::manifest::now_ms().saturating_add(ttl))
}

/// The catalog as served: `built`'s entries plus the manifest signed with
/// the manifest key under `serial`, valid until `expires_at_ms`. Its
/// `version_hash` is the entries' (the manifest's `version_hash`, what
/// hosts compute and show), so it does not change when only the serial
/// does.
pub fn seal_until(
    keys: &Keys,
    built: &Built,
    serial: u64,
    issued_at: String,
    expires_at_ms: u64,
) -> Result<CatalogResponse, CatalogError> {
    let manifest = Manifest::describe(serial, issued_at, expires_at_ms, &built.commands, built.guest.clone());
    let mut commands = built.commands.clone();
    commands.push(manifest.to_entry(keys.manifest())?);
    let total_count = i32::try_from(commands.len()).unwrap_or(i32::MAX);
    Ok(CatalogResponse { commands, total_count, version_hash: built.content_hash.clone(), keepalive: false })
}

/// What a rescan compares to decide whether to rebuild: each relevant
/// file's name, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(OsString, u64, Option<SystemTime>)>);

/// Files modified this recently may change again without their size or
/// mtime changing (coarse timestamps), so a fingerprint holding one is never
/// trusted as "unchanged".
const SETTLE: Duration = Duration::from_secs(2);

impl Fingerprint {
    /// The folder's current fingerprint; `None` if it cannot be listed.
    pub fn of(folder: &Path) -> Option<Fingerprint> {
        let files = folder_files(folder).ok()?;
        Some(Fingerprint(files.into_iter().map(|(name, _, meta)| (name, meta.len(), meta.modified().ok())).collect()))
    }

    /// Whether some file was modified within the last two seconds (or in the
    /// future, or has no mtime): then contents may differ with equal metadata.
    pub fn unsettled(&self) -> bool {
        let now = SystemTime::now();
        self.0.iter().any(|(_, _, mtime)| match mtime {
            Some(t) => now.duration_since(*t).map_or(true, |age| age < SETTLE),
            None => true,
        })
    }
}
