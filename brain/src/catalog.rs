//! Building the catalog: the standard commands, the catalog folder's
//! commands written in AVAP, and the guest module, each entry's payload in a
//! signed package.
//!
//! Entry order on the wire: the 27 standard commands in reference order, the
//! folder's `.avap` commands sorted by name, then the guest module.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use avap_guest_vm::Diagnostic;
use avap_wire::catalog::{GUEST_VM_ENTRY, TYPE_AVAP, TYPE_FUNCTION, TYPE_GUEST_VM, version_hash};
use avap_wire::package::PackageError;
use avap_wire::pb::{CatalogResponse, CommandResponse};
use serde::Deserialize;

/// The spec's reference data for the standard commands (a vendored copy of
/// `shared/spec/commands-reference.json`).
static REFERENCE: &str = include_str!("../catalog/commands-reference.json");

/// The file in the catalog folder that replaces the built-in guest module.
pub const GUEST_WASM_FILE: &str = "guest-vm.wasm";
/// The extension of catalog commands written in AVAP.
pub const AVAP_EXTENSION: &str = "avap";
/// Largest `.avap` source the folder may hold.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
/// Largest `guest-vm.wasm` the folder may hold.
pub const MAX_WASM_BYTES: u64 = 64 << 20;

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
            | CatalogError::NotWasm { path } => Some(path),
            CatalogError::Reference(_) | CatalogError::Package(_) => None,
        }
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
    key: &[u8],
    name: &str,
    kind: &str,
    interface_json: String,
    payload: &[u8],
) -> Result<CommandResponse, CatalogError> {
    Ok(avap_wire::catalog::signed_entry(key, name, kind, interface_json, payload)?)
}

/// The payload of a standard command's package. The original servers ship
/// Python implementations under type `function`; AVAP hosts implement the
/// standard commands natively and use only the name and interface, so this
/// stub carries no code. An original Python server fed from this catalog
/// needs its own implementations.
fn standard_stub(name: &str) -> String {
    format!(
        "# AVAP standard command `{name}`: implemented natively by AVAP hosts (avap-guest-vm).\n\
         # This package carries no Python code; original Python servers need their own implementation.\n"
    )
}

/// The 27 standard commands, type `function`.
pub fn standard_entries(key: &[u8]) -> Result<Vec<CommandResponse>, CatalogError> {
    let reference: Reference = serde_json::from_str(REFERENCE).map_err(|e| CatalogError::Reference(e.to_string()))?;
    reference
        .commands
        .iter()
        .map(|c| {
            let interface = interface_json(c.parameters.iter().map(|p| (p.name.as_str(), p.kind.as_str())));
            entry(key, &c.name, TYPE_FUNCTION, interface, standard_stub(&c.name).as_bytes())
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
fn avap_entry(key: &[u8], path: &Path) -> Result<CommandResponse, CatalogError> {
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
    entry(key, name, TYPE_AVAP, interface, source.as_bytes())
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
        let relevant = name == GUEST_WASM_FILE || path.extension().is_some_and(|e| e == AVAP_EXTENSION);
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

/// Builds the whole catalog. `folder: None` is the built-in default.
/// `Err` lists every problem found (the catalog is then not usable at all).
pub fn build(key: &[u8], folder: Option<&Path>) -> Result<CatalogResponse, Vec<CatalogError>> {
    let mut commands = standard_entries(key).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut guest: Option<Vec<u8>> = None;
    if let Some(folder) = folder {
        let files = folder_files(folder).map_err(|e| vec![e])?;
        for (name, path, _) in files {
            if name == GUEST_WASM_FILE {
                match guest_wasm(&path) {
                    Ok(bytes) => guest = Some(bytes),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            match avap_entry(key, &path) {
                Ok(e) if commands.iter().any(|c| c.name == e.name) => {
                    errors.push(CatalogError::Duplicate { path, name: e.name })
                }
                Ok(e) => commands.push(e),
                Err(e) => errors.push(e),
            }
        }
    }
    let guest_bytes = guest.as_deref().unwrap_or(avap_guest_embed::GUEST_WASM);
    match entry(key, GUEST_VM_ENTRY, TYPE_GUEST_VM, "[]".to_string(), guest_bytes) {
        Ok(e) => commands.push(e),
        Err(e) => errors.push(e),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let total_count = i32::try_from(commands.len()).unwrap_or(i32::MAX);
    let version_hash = version_hash(&commands);
    Ok(CatalogResponse { commands, total_count, version_hash })
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
