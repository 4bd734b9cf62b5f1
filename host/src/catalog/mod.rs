//! The live command catalog, and how a catalog from the definition server is
//! vetted before it replaces it.
//!
//! An update is applied all or nothing ([`verify`], then
//! `AppState::apply_catalog`): within the caps on entries and module size;
//! a signed manifest, not expired, that lists exactly the other entries
//! (name, type, the hash of the code and of the `interface_json`: all a
//! host acts on), whose version hash the host recomputes and whose serial
//! is newer than the live one, or the same serial with the very same
//! manifest (required unless `--original-servers`, see [`trust`]); every entry's
//! package verified under the catalog-entry key; every `avap` entry one
//! valid function definition named like the entry; and a `guest-vm` entry
//! a wasm binary with an Ed25519 signature by a trusted key that passes
//! every step of the guest swap. One bad entry and the whole update is
//! refused; the previous catalog stays.
//!
//! A `guest-vm-artifact` entry (at most one, and only beside a guest
//! module) is the release's precompiled guest: an optimisation, never a
//! reason to refuse a catalog. It is checked where it would be used
//! ([`crate::runtime::artifacts::open_signed`]): one that does not verify
//! for this module and this engine is not used, and the module is compiled.

use std::time::SystemTime;

pub mod canary;
pub mod rollout;
pub mod sync;
pub mod trust;

use avap_wire::catalog::{TYPE_AVAP, TYPE_FUNCTION, TYPE_GUEST_ARTIFACT, TYPE_GUEST_VM};
use avap_wire::guest_sig::{ArtifactClaim, ArtifactError, GuestSigError, GuestSignature};
use avap_wire::manifest::{GuestPin, MANIFEST_ENTRY, Manifest, ManifestError, TYPE_MANIFEST, now_ms};
use avap_wire::package::{self, PackageError};
use avap_wire::pb::{CatalogResponse, CommandResponse};

use avap_guest_vm::builtins::Builtin;
use serde_json::json;
use serde_json::value::RawValue;
pub use trust::Trust;

use crate::runtime::artifacts::SignedArtifact;

/// Where the live catalog came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogSource {
    /// The host's own: every built-in command, no catalog functions.
    BuiltIn,
    /// Synced from the definition server.
    Brain,
}

/// A catalog ready for executions.
#[derive(Debug, Clone)]
pub struct LiveCatalog {
    pub source: CatalogSource,
    /// The version hash the host computed from the entries.
    pub version_hash: Option<String>,
    /// The manifest's serial; `None` without one (built-in, or an original
    /// server's catalog).
    pub serial: Option<u64>,
    /// The manifest entry's hash: the same serial must come with the same
    /// manifest.
    pub manifest_hash: Option<String>,
    /// When the manifest expires: past it, a link that brings no newer
    /// catalog is shown as stale however many keepalives arrive.
    pub expires_at: Option<SystemTime>,
    pub entries: usize,
    /// The last successful sync with the definition server, whether or not
    /// it changed anything.
    pub synced_at: Option<SystemTime>,
    /// When this catalog's content was applied (it differs from
    /// `synced_at` once later syncs found nothing new).
    pub applied_at: Option<SystemTime>,
    /// Names of every entry, for `/health`.
    pub names: Vec<String>,
    /// `function` entries naming a built-in whose `interface_json` does not
    /// match the built-in's parameters: not run here ([`interface_mismatch`]).
    pub interface_mismatches: Vec<InterfaceMismatch>,
    /// The guest's `catalog` input field (docs/ABI.md), serialised once per
    /// catalog rather than per request. `None` for the built-in catalog.
    pub guest_json: Option<Box<RawValue>>,
}

impl LiveCatalog {
    /// The host's own catalog: every built-in command of the guest.
    pub fn built_in() -> Self {
        let names: Vec<String> = Builtin::ALL.iter().map(|b| b.spec().name.to_string()).collect();
        LiveCatalog {
            source: CatalogSource::BuiltIn,
            version_hash: None,
            serial: None,
            manifest_hash: None,
            expires_at: None,
            entries: names.len(),
            synced_at: None,
            applied_at: None,
            names,
            interface_mismatches: Vec::new(),
            guest_json: None,
        }
    }
}

/// A catalog from the definition server whose packages all verified; the
/// guest module, if any, still has to pass the swap.
#[derive(Debug)]
pub struct VerifiedCatalog {
    /// Recomputed from the entries (the server's is not trusted).
    pub version_hash: String,
    /// The manifest's serial, if the catalog has one.
    pub serial: Option<u64>,
    /// The manifest entry's hash, if the catalog has one.
    pub manifest_hash: Option<String>,
    /// The manifest's expiry, if the catalog has one.
    pub expires_at: Option<SystemTime>,
    pub names: Vec<String>,
    /// `function` entries: run by the built-in of that name, if any.
    pub functions: Vec<String>,
    /// `function` entries naming a built-in with another interface: kept
    /// out of the built-ins the guest may run.
    pub interface_mismatches: Vec<InterfaceMismatch>,
    /// `avap` entries: `(name, source)`.
    pub avap: Vec<(String, String)>,
    /// The `guest-vm` entry: its module, signature checked.
    pub guest: Option<VerifiedGuest>,
}

/// A guest module whose signature verified.
#[derive(Debug)]
pub struct VerifiedGuest {
    pub module: Vec<u8>,
    /// [`crate::runtime::module_digest`] of `module`, computed once.
    pub digest: String,
    /// The id of the key that signed it.
    pub signed_by: String,
    /// What the manifest pins (its digest is the module's).
    pub pin: Option<GuestPin>,
    /// The release's precompiled artifact of it, if the catalog carries
    /// one: not verified yet (that needs the engine and the module as this
    /// host compiles it).
    pub artifact: Option<SignedArtifact>,
}

/// The most a precompiled guest artifact may weigh (the guest's compiled
/// code is a few times its module; the whole message is capped by
/// `AVAP_BRAIN_MAX_MESSAGE_BYTES` before this).
pub const MAX_GUEST_ARTIFACT_BYTES: usize = 64 << 20;

/// Why a catalog update was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("entry `{name}`: package failed verification: {source}")]
    Integrity { name: String, source: PackageError },
    #[error("entry `{name}`: unknown type `{ty}`")]
    UnknownType { name: String, ty: String },
    #[error("entry `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("catalog holds {0} `guest-vm` entries; at most one is allowed")]
    SeveralGuests(usize),
    #[error("guest module refused: {0}")]
    Guest(String),
    #[error("guest module refused: {0}")]
    GuestSignature(#[from] GuestSigError),
    #[error("guest module refused: {size} bytes, over the {limit}-byte AVAP_MAX_GUEST_MODULE_BYTES")]
    GuestTooLarge { size: usize, limit: usize },
    #[error("guest module refused: not a wasm binary (it must start with \\0asm; text formats are not accepted)")]
    GuestNotBinary,
    #[error("catalog of {entries} entries is over the {limit}-entry AVAP_MAX_CATALOG_ENTRIES")]
    TooManyEntries { entries: usize, limit: usize },
    #[error(
        "catalog has no signed manifest (an empty or partial catalog is refused unless signed; original servers need --original-servers)"
    )]
    NoManifest,
    #[error("catalog holds {0} manifests; at most one is allowed")]
    SeveralManifests(usize),
    #[error("manifest refused: {0}")]
    Manifest(#[from] ManifestError),
    #[error("manifest serial {serial} is older than the live catalog's {live}: a replayed or stale catalog")]
    Replay { serial: u64, live: u64 },
    #[error(
        "manifest serial {serial} is the live one's but the manifest differs: a serial names one catalog, never two"
    )]
    SameSerial { serial: u64 },
    #[error(
        "manifest refused: {0}; the definition server seals its catalog again well before that, so this one is old (replayed?) or this host's clock is ahead"
    )]
    Expired(ManifestError),
    #[error("the live catalog is signed by a manifest; a catalog without one cannot replace it")]
    ManifestDropped,
    #[error(
        "guest {digest} failed its canary: the interpreter failed {faults} of its first {runs} executions; \
         back on the previous guest, and this module is refused"
    )]
    Canary { digest: String, faults: u32, runs: u32 },
    #[error(
        "manifest serial {serial} is more than ten minutes ahead of this host's clock (brain serials are milliseconds)"
    )]
    FutureSerial { serial: u64 },
    #[error("internal error while applying the catalog: {0}")]
    Internal(String),
}

impl CatalogError {
    /// The metric label of a refusal (`avap_catalog_refusals_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            CatalogError::Integrity { .. } => "integrity",
            CatalogError::UnknownType { .. } | CatalogError::Invalid { .. } | CatalogError::SeveralGuests(_) => {
                "invalid_entry"
            }
            CatalogError::Guest(_) => "guest_vetting",
            CatalogError::GuestSignature(_) => "guest_signature",
            CatalogError::GuestTooLarge { .. } | CatalogError::TooManyEntries { .. } => "too_large",
            CatalogError::GuestNotBinary => "guest_not_binary",
            CatalogError::NoManifest | CatalogError::ManifestDropped => "no_manifest",
            CatalogError::SeveralManifests(_) | CatalogError::Manifest(_) | CatalogError::FutureSerial { .. } => {
                "manifest"
            }
            CatalogError::Internal(_) => "internal",
            CatalogError::Replay { .. } | CatalogError::SameSerial { .. } => "replay",
            CatalogError::Expired(_) => "expired",
            CatalogError::Canary { .. } => "canary",
        }
    }

    /// Every label [`CatalogError::reason`] gives.
    pub const REASONS: [&'static str; 12] = [
        "integrity",
        "invalid_entry",
        "guest_vetting",
        "guest_signature",
        "too_large",
        "guest_not_binary",
        "no_manifest",
        "manifest",
        "replay",
        "expired",
        "canary",
        "internal",
    ];
}

/// Verifies `response` against `trust`; the first failure refuses it all.
/// CPU-bound (MACs and hashes over every entry): call it off the async
/// workers.
pub fn verify(response: &CatalogResponse, trust: &Trust) -> Result<VerifiedCatalog, CatalogError> {
    let caps = &trust.caps;
    if response.commands.len() > caps.max_entries {
        return Err(CatalogError::TooManyEntries { entries: response.commands.len(), limit: caps.max_entries });
    }
    let (manifests, entries): (Vec<&CommandResponse>, Vec<&CommandResponse>) =
        response.commands.iter().partition(|e| e.r#type == TYPE_MANIFEST || e.name == MANIFEST_ENTRY);
    let manifest = match manifests.as_slice() {
        [] if trust.require_manifest => return Err(CatalogError::NoManifest),
        [] => None,
        [one] => {
            let manifest = Manifest::open(one, trust.keys.manifest())?;
            manifest.check_fresh(now_ms()).map_err(CatalogError::Expired)?;
            manifest.check(&entries)?;
            Some((manifest, avap_wire::catalog::entry_hash(&one.code)))
        }
        more => return Err(CatalogError::SeveralManifests(more.len())),
    };
    let (manifest, manifest_hash) = match manifest {
        Some((m, hash)) => (Some(m), Some(hash)),
        None => (None, None),
    };
    // The version hash over each entry's own code hash, not the `hash` it
    // was sent with, and its interface: a manifest has checked them all
    // already; without one, they are hashed here.
    let version_hash = match &manifest {
        Some(m) => m.version_hash.clone(),
        None => avap_wire::catalog::version_hash_of(entries.iter().map(|e| avap_wire::catalog::EntryKey::computed(e))),
    };
    let expires_at = manifest
        .as_ref()
        .and_then(|m| SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(m.expires_at_ms)));
    let mut out = VerifiedCatalog {
        version_hash,
        serial: manifest.as_ref().map(|m| m.serial),
        manifest_hash,
        expires_at,
        names: Vec::with_capacity(entries.len()),
        functions: Vec::new(),
        interface_mismatches: Vec::new(),
        avap: Vec::new(),
        guest: None,
    };
    let mut guests = 0;
    let mut artifacts = Vec::new();
    for entry in entries {
        let name = &entry.name;
        let payload = package::verify(trust.keys.catalog_entry(), &entry.code)
            .map_err(|source| CatalogError::Integrity { name: name.clone(), source })?;
        if !is_identifier(name) && entry.r#type != TYPE_GUEST_VM && entry.r#type != TYPE_GUEST_ARTIFACT {
            return Err(CatalogError::Invalid { name: name.clone(), reason: "name is not an AVAP identifier".into() });
        }
        match entry.r#type.as_str() {
            TYPE_FUNCTION => {
                if let Some(m) = interface_mismatch(name, &entry.interface_json) {
                    out.interface_mismatches.push(m);
                }
                out.functions.push(name.clone());
            }
            TYPE_AVAP => {
                let source = std::str::from_utf8(payload).map_err(|_| CatalogError::Invalid {
                    name: name.clone(),
                    reason: "AVAP source is not UTF-8".into(),
                })?;
                out.avap.push((name.clone(), source.to_string()));
            }
            TYPE_GUEST_VM => {
                guests += 1;
                if payload.len() > caps.max_module_bytes {
                    return Err(CatalogError::GuestTooLarge { size: payload.len(), limit: caps.max_module_bytes });
                }
                if !payload.starts_with(b"\0asm") {
                    return Err(CatalogError::GuestNotBinary);
                }
                let signature = GuestSignature::from_interface_json(&entry.interface_json)?;
                let signed_by = signature.verify(payload, &trust.guest_keys)?;
                let pin = manifest.as_ref().and_then(|m| m.guest.clone());
                let digest = crate::runtime::module_digest(payload);
                if let Some(pin) = &pin
                    && pin.digest != digest
                {
                    return Err(CatalogError::Guest(format!(
                        "the manifest pins {}, the module is {digest}",
                        pin.digest
                    )));
                }
                out.guest = Some(VerifiedGuest { module: payload.to_vec(), digest, signed_by, pin, artifact: None });
            }
            TYPE_GUEST_ARTIFACT => {
                let claim = if payload.len() > MAX_GUEST_ARTIFACT_BYTES {
                    Err(ArtifactError::Malformed(format!(
                        "{} bytes, over the {MAX_GUEST_ARTIFACT_BYTES}-byte limit",
                        payload.len()
                    )))
                } else {
                    ArtifactClaim::from_interface_json(&entry.interface_json)
                };
                let bytes = if claim.is_ok() { payload.into() } else { Vec::new().into() };
                artifacts.push((name.clone(), SignedArtifact { bytes, claim }));
            }
            other => return Err(CatalogError::UnknownType { name: name.clone(), ty: other.to_string() }),
        }
        out.names.push(name.clone());
    }
    if guests > 1 {
        return Err(CatalogError::SeveralGuests(guests));
    }
    match (artifacts.pop(), artifacts.is_empty(), out.guest.as_mut()) {
        (None, _, _) => {}
        (Some((name, _)), false, _) => {
            return Err(CatalogError::Invalid { name, reason: "a second precompiled guest artifact".into() });
        }
        (Some((name, _)), true, None) => {
            return Err(CatalogError::Invalid {
                name,
                reason: "a precompiled guest artifact without a guest module".into(),
            });
        }
        (Some((_, artifact)), true, Some(guest)) => guest.artifact = Some(artifact),
    }
    if out.guest.is_none() && manifest.as_ref().is_some_and(|m| m.guest.is_some()) {
        return Err(CatalogError::Manifest(ManifestError::Mismatch(
            "the manifest pins a guest the catalog does not carry".into(),
        )));
    }
    Ok(out)
}

impl VerifiedCatalog {
    /// The guest's `catalog` input: built-ins the catalog holds, its AVAP
    /// functions, and names the host cannot run. `function` entries go in
    /// both lists: the guest runs a built-in of that name and reports any
    /// other as not supported by this host.
    /// A built-in whose entry's interface does not match is left out of
    /// `commands`, so calling it reports the entry as not supported.
    pub fn guest_json(&self) -> Box<RawValue> {
        let functions: Vec<_> =
            self.avap.iter().map(|(name, source)| json!({"name": name, "source": source})).collect();
        let runnable: Vec<&String> =
            self.functions.iter().filter(|f| !self.interface_mismatches.iter().any(|m| &m.name == *f)).collect();
        let doc = json!({
            "commands": runnable,
            "functions": functions,
            "unsupported": self.functions,
        });
        // A `Value` always serialises to valid JSON.
        RawValue::from_string(doc.to_string()).unwrap_or_else(|_| empty_raw())
    }

    pub fn into_live(self, guest_json: Box<RawValue>) -> LiveCatalog {
        let now = SystemTime::now();
        LiveCatalog {
            source: CatalogSource::Brain,
            version_hash: Some(self.version_hash),
            serial: self.serial,
            manifest_hash: self.manifest_hash,
            expires_at: self.expires_at,
            entries: self.names.len(),
            synced_at: Some(now),
            applied_at: Some(now),
            names: self.names,
            interface_mismatches: self.interface_mismatches,
            guest_json: Some(guest_json),
        }
    }
}

/// A `function` entry whose name is a built-in command but whose
/// `interface_json` does not list that command's parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceMismatch {
    pub name: String,
    /// What differs, in words.
    pub reason: String,
}

/// Largest `interface_json` read for the check (the original servers' are
/// a few hundred bytes).
const MAX_INTERFACE_BYTES: usize = 16 * 1024;

/// Checks the interface a `function` entry declares against the built-in
/// of that name: the same parameter names (`item`, or `name` as the
/// original server also reads), in the same order. The kinds are not
/// compared: the original data uses `variable`, `var` and `value` loosely.
/// `None` when the name is no built-in, or the interface matches.
pub fn interface_mismatch(name: &str, interface_json: &str) -> Option<InterfaceMismatch> {
    let builtin = Builtin::from_name(name)?;
    let want: Vec<&str> = builtin.spec().params.iter().map(|p| p.name).collect();
    let mismatch = |reason: String| Some(InterfaceMismatch { name: name.to_string(), reason });
    if interface_json.len() > MAX_INTERFACE_BYTES {
        return mismatch(format!("interface_json is {} bytes, over {MAX_INTERFACE_BYTES}", interface_json.len()));
    }
    let text = interface_json.trim();
    let items: Vec<serde_json::Value> = if text.is_empty() {
        Vec::new()
    } else {
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(_) => return mismatch("interface_json is not a JSON list".into()),
            Err(e) => return mismatch(format!("interface_json does not parse: {e}")),
        }
    };
    let mut got = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.get("item").or_else(|| item.get("name")).and_then(serde_json::Value::as_str) {
            Some(param) => got.push(param),
            None => return mismatch(format!("parameter {} has no `item` name", i + 1)),
        }
    }
    if got == want {
        return None;
    }
    mismatch(format!("interface lists ({}), the built-in takes ({})", got.join(", "), want.join(", ")))
}

fn empty_raw() -> Box<RawValue> {
    RawValue::from_string("{}".into()).unwrap_or_default()
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether guest version `candidate` is older than `live` (semantic
/// versioning: `1.0.0-rc.10` is newer than `1.0.0-rc.2`, older than
/// `1.0.0`). Every guest's version is checked at load
/// ([`crate::runtime::SandboxEngine::load_guest`]), so both parse; a live
/// version that somehow does not is never newer than a candidate.
pub fn is_older(candidate: &str, live: &str) -> bool {
    match (semver::Version::parse(candidate), semver::Version::parse(live)) {
        (Ok(c), Ok(l)) => c < l,
        (Err(_), Ok(_)) => true,
        (_, Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avap_wire::guest_sig::{GuestSigningKey, dev_signing_key};
    use avap_wire::keys::{KeyScheme, Keys};
    use serde_json::json;

    fn trust(f: impl FnOnce(&mut crate::Config)) -> Trust {
        let mut c = crate::Config::defaults();
        c.dev = true;
        c.standalone = true;
        f(&mut c);
        Trust::from_config(&c).expect("trust")
    }

    fn keys() -> Keys {
        Keys::new(avap_wire::auth::DEFAULT_INTERNAL_KEY.as_bytes(), KeyScheme::Separated)
    }

    /// An entry; one naming a built-in gets the built-in's interface.
    fn entry(name: &str, ty: &str, payload: &[u8]) -> CommandResponse {
        let interface = match Builtin::from_name(name) {
            Some(b) => {
                let items: Vec<_> = b.spec().params.iter().map(|p| json!({"item": p.name, "type": "value"})).collect();
                serde_json::Value::Array(items).to_string()
            }
            None => "[]".into(),
        };
        avap_wire::catalog::signed_entry(keys().catalog_entry(), name, ty, interface, payload).expect("sign")
    }

    #[test]
    fn interfaces_are_checked_against_the_built_ins() {
        assert_eq!(interface_mismatch("notABuiltin", "garbage"), None);
        assert_eq!(interface_mismatch("else", "[]"), None);
        assert_eq!(interface_mismatch("else", ""), None);
        let add_var = r#"[{"item":"targetVarName","type":"variable"},{"name":"varValue","type":"value"}]"#;
        assert_eq!(interface_mismatch("addVar", add_var), None, "`name` is read like `item`; kinds are not compared");
        let reason = |name: &str, json: &str| interface_mismatch(name, json).map(|m| m.reason);
        assert_eq!(
            reason("addVar", "[]").as_deref(),
            Some("interface lists (), the built-in takes (targetVarName, varValue)")
        );
        assert_eq!(reason("addVar", "{}").as_deref(), Some("interface_json is not a JSON list"));
        assert!(reason("addVar", "[").is_some_and(|r| r.starts_with("interface_json does not parse")));
        assert_eq!(reason("addVar", r#"[{"type":"var"}]"#).as_deref(), Some("parameter 1 has no `item` name"));
        let huge = format!("[{}]", vec![r#"{"item":"x"}"#; 2000].join(","));
        assert!(reason("addVar", &huge).is_some_and(|r| r.contains("bytes, over")));
        // A mismatching built-in is kept out of the guest's commands, and
        // listed as unsupported.
        let c = sealed(
            vec![
                avap_wire::catalog::signed_entry(keys().catalog_entry(), "addVar", TYPE_FUNCTION, "[]".into(), b"#")
                    .expect("sign"),
                entry("addResult", TYPE_FUNCTION, b"#"),
            ],
            1,
        );
        let v = verify(&c, &trust(|_| {})).expect("verifies: the signatures are sound");
        assert_eq!(v.interface_mismatches.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["addVar"]);
        let guest: serde_json::Value = serde_json::from_str(v.guest_json().get()).expect("json");
        assert_eq!(guest["commands"], json!(["addResult"]));
        assert_eq!(guest["unsupported"], json!(["addVar", "addResult"]));
    }

    fn guest_entry(module: &[u8], key: &GuestSigningKey) -> CommandResponse {
        let json = key.sign(module).to_interface_json();
        avap_wire::catalog::signed_entry(keys().catalog_entry(), "avap-guest-vm", TYPE_GUEST_VM, json, module)
            .expect("sign")
    }

    /// `entries` sealed with a manifest of `serial`.
    fn sealed(entries: Vec<CommandResponse>, serial: u64) -> CatalogResponse {
        let manifest = Manifest::describe(serial, "2026-12-01T00:00:00Z".into(), LATER, &entries, None);
        let mut commands = entries;
        commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
        CatalogResponse {
            total_count: commands.len() as i32,
            version_hash: "not trusted".into(),
            commands,
            keepalive: false,
        }
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    /// An expiry that never comes.
    const LATER: u64 = u64::MAX;

    /// The interface of every entry is signed: one byte of it changed on
    /// the way refuses the catalog, though every package verifies.
    #[test]
    fn an_altered_interface_refuses_the_catalog() {
        let mut c =
            sealed(vec![entry("addVar", TYPE_FUNCTION, b"# py"), entry("addResult", TYPE_FUNCTION, b"# py")], 1);
        assert!(verify(&c, &trust(|_| {})).is_ok());
        let add_result = c.commands.iter_mut().find(|e| e.name == "addResult").expect("entry");
        add_result.interface_json = add_result.interface_json.replacen("sourceVariable", "sourceVariablf", 1);
        let err = verify(&c, &trust(|_| {})).expect_err("altered");
        assert!(matches!(err, CatalogError::Manifest(ManifestError::Mismatch(_))), "{err}");
        assert!(err.to_string().contains("`addResult` (function): its interface_json"), "{err}");
        assert_eq!(err.reason(), "manifest");
    }

    #[test]
    fn an_expired_manifest_refuses_the_catalog() {
        let entries = vec![entry("addVar", TYPE_FUNCTION, b"# py")];
        let at = |expires: u64| {
            let manifest = Manifest::describe(5, "x".into(), expires, &entries, None);
            let mut commands = entries.clone();
            commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
            CatalogResponse { total_count: 2, version_hash: String::new(), commands, keepalive: false }
        };
        let err = verify(&at(now_ms() - 1000), &trust(|_| {})).expect_err("expired");
        assert_eq!(err.reason(), "expired");
        assert!(err.to_string().contains("expired at"), "{err}");
        let fresh = verify(&at(now_ms() + 60_000), &trust(|_| {})).expect("fresh");
        let expires = fresh.expires_at.expect("an expiry");
        assert!(expires > SystemTime::now() && fresh.manifest_hash.is_some());
        // The largest expiry neither overflows nor expires.
        let far = verify(&at(u64::MAX), &trust(|_| {})).expect("far");
        assert!(far.expires_at.is_none_or(|t| t > SystemTime::now()));
    }

    #[test]
    fn sorts_entries_by_type() {
        let c = sealed(
            vec![
                entry("addVar", TYPE_FUNCTION, b"# py"),
                entry("greet", TYPE_AVAP, b"function greet(x) {\n return x\n}"),
                guest_entry(MODULE, &dev_signing_key()),
            ],
            3,
        );
        let v = verify(&c, &trust(|_| {})).expect("verifies");
        assert_eq!(v.functions, ["addVar"]);
        assert_eq!(v.avap[0].0, "greet");
        assert_eq!(v.serial, Some(3));
        assert_eq!(v.guest.as_ref().map(|g| g.module.as_slice()), Some(MODULE));
        assert_eq!(v.guest.as_ref().map(|g| g.signed_by.clone()), Some(dev_signing_key().public().id()));
        assert_ne!(v.version_hash, "not trusted", "the version hash is recomputed");
        let guest: serde_json::Value = serde_json::from_str(v.guest_json().get()).expect("json");
        assert_eq!(guest["commands"], json!(["addVar"]));
        assert_eq!(guest["functions"][0]["name"], json!("greet"));
    }

    #[test]
    fn one_tampered_entry_refuses_the_whole_catalog() {
        let mut c = sealed(
            vec![entry("addVar", TYPE_FUNCTION, b"# py"), entry("greet", TYPE_AVAP, b"function greet() {\n}")],
            1,
        );
        let last = c.commands[1].code.len() - 1;
        c.commands[1].code[last] ^= 1;
        assert!(matches!(verify(&c, &trust(|_| {})), Err(CatalogError::Manifest(_))), "the manifest catches it first");
        let c = sealed(vec![entry("addVar", TYPE_FUNCTION, b"# py")], 1);
        let other = trust(|c| c.internal_key = "another secret".into());
        assert!(matches!(verify(&c, &other), Err(CatalogError::Manifest(ManifestError::Integrity(_)))));
    }

    #[test]
    fn catalogs_without_a_manifest_need_original_servers_mode() {
        let bare = |entries: Vec<CommandResponse>| CatalogResponse {
            total_count: entries.len() as i32,
            version_hash: "x".into(),
            commands: entries,
            keepalive: false,
        };
        assert!(matches!(verify(&bare(vec![]), &trust(|_| {})), Err(CatalogError::NoManifest)), "an empty catalog");
        let raw = avap_wire::auth::DEFAULT_INTERNAL_KEY.as_bytes();
        let original =
            avap_wire::catalog::signed_entry(raw, "addVar", TYPE_FUNCTION, "[]".into(), b"# py").expect("sign");
        let compat = trust(|c| {
            c.dev = false;
            c.original_servers = true;
        });
        let v = verify(&bare(vec![original.clone()]), &compat).expect("the original scheme verifies");
        assert_eq!((v.functions.as_slice(), v.serial), (&["addVar".to_string()][..], None));
        assert!(matches!(verify(&sealed(vec![original], 1), &trust(|_| {})), Err(CatalogError::Integrity { .. })));
    }

    #[test]
    fn a_compiled_package_is_not_a_catalog_entry() {
        let code = avap_wire::package::pack(keys().package(), b"function evil() {\n}").expect("pack");
        let hash = avap_wire::catalog::entry_hash(&code);
        let forged =
            CommandResponse { name: "evil".into(), r#type: TYPE_AVAP.into(), interface_json: "[]".into(), code, hash };
        assert!(
            matches!(verify(&sealed(vec![forged], 1), &trust(|_| {})), Err(CatalogError::Integrity { name, .. }) if name == "evil")
        );
    }

    #[test]
    fn guest_modules_need_a_trusted_signature_and_a_binary() {
        let stranger = GuestSigningKey::generate().expect("key");
        let c = sealed(vec![guest_entry(MODULE, &stranger)], 1);
        let err = verify(&c, &trust(|_| {})).expect_err("unknown key");
        assert!(matches!(err, CatalogError::GuestSignature(GuestSigError::UnknownKey(_))), "{err}");
        assert_eq!(err.reason(), "guest_signature");
        let trusted = trust(|c| c.guest_keys = vec![stranger.public()].into());
        assert!(verify(&c, &trusted).is_ok());
        let unsigned = avap_wire::catalog::signed_entry(
            keys().catalog_entry(),
            "avap-guest-vm",
            TYPE_GUEST_VM,
            "[]".into(),
            MODULE,
        )
        .expect("sign");
        assert!(matches!(
            verify(&sealed(vec![unsigned], 1), &trusted),
            Err(CatalogError::GuestSignature(GuestSigError::NotSigned))
        ));
        let wat = b"(module)";
        assert!(matches!(
            verify(&sealed(vec![guest_entry(wat, &stranger)], 1), &trusted),
            Err(CatalogError::GuestNotBinary)
        ));
        let small = trust(|c| c.max_guest_module_bytes = 4);
        assert!(matches!(
            verify(&sealed(vec![guest_entry(MODULE, &dev_signing_key())], 1), &small),
            Err(CatalogError::GuestTooLarge { .. })
        ));
    }

    #[test]
    fn refuses_unknown_types_bad_names_two_guests_and_too_many_entries() {
        let t = trust(|_| {});
        assert!(matches!(
            verify(&sealed(vec![entry("x", "python3", b"")], 1), &t),
            Err(CatalogError::UnknownType { .. })
        ));
        assert!(matches!(
            verify(&sealed(vec![entry("no spaces", TYPE_FUNCTION, b"")], 1), &t),
            Err(CatalogError::Invalid { .. })
        ));
        let two = vec![guest_entry(MODULE, &dev_signing_key()), {
            let mut g = guest_entry(b"\0asm\x01\0\0\0\0", &dev_signing_key());
            g.name = "g2".into();
            g
        }];
        assert!(matches!(verify(&sealed(two, 1), &t), Err(CatalogError::SeveralGuests(2))));
        let few = trust(|c| c.max_catalog_entries = 2);
        let three = sealed(vec![entry("a", TYPE_FUNCTION, b""), entry("b", TYPE_FUNCTION, b"")], 1);
        assert!(matches!(verify(&three, &few), Err(CatalogError::TooManyEntries { entries: 3, limit: 2 })));
    }

    #[test]
    fn manifests_are_held_to_what_they_pin() {
        let t = trust(|_| {});
        let guest = guest_entry(MODULE, &dev_signing_key());
        let pinned = |digest: &str, percent: u8| {
            let entries = vec![guest.clone()];
            let pin = GuestPin { version: String::new(), digest: digest.into(), rollout_percent: percent };
            let manifest = Manifest::describe(1, "2026-12-01T00:00:00Z".into(), LATER, &entries, Some(pin));
            let mut commands = entries;
            commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
            CatalogResponse { total_count: 2, version_hash: String::new(), commands, keepalive: false }
        };
        let digest = crate::runtime::module_digest(MODULE);
        let v = verify(&pinned(&digest, 30), &t).expect("pinned right");
        assert_eq!(v.guest.and_then(|g| g.pin).map(|p| p.rollout_percent), Some(30));
        let err = verify(&pinned("sha256:00", 100), &t).expect_err("another module");
        assert!(err.to_string().contains("the manifest pins sha256:00"), "{err}");
        assert!(matches!(verify(&pinned(&digest, 101), &t), Err(CatalogError::Manifest(ManifestError::Malformed(_)))));
        // A pin and no guest entry.
        let pin = GuestPin { version: String::new(), digest, rollout_percent: 100 };
        let entries = vec![entry("addVar", TYPE_FUNCTION, b"")];
        let manifest = Manifest::describe(1, "x".into(), LATER, &entries, Some(pin));
        let mut commands = entries;
        commands.push(manifest.to_entry(keys().manifest()).expect("manifest"));
        let c = CatalogResponse { total_count: 2, version_hash: String::new(), commands, keepalive: false };
        assert!(verify(&c, &t).expect_err("no guest").to_string().contains("does not carry"));
        // Two manifests.
        let mut two = sealed(vec![entry("addVar", TYPE_FUNCTION, b"")], 1);
        let again = two.commands[1].clone();
        two.commands.push(again);
        assert!(matches!(verify(&two, &t), Err(CatalogError::SeveralManifests(2))));
    }

    #[test]
    fn versions_order_by_semver() {
        assert!(!is_older("0.10.0", "0.9.9"));
        assert!(is_older("1.0.0-rc1", "1.0.0"));
        assert!(!is_older("0.1.0", "0.1.0"));
        assert!(is_older("0.0.9", "0.1.0"));
        assert!(!is_older("1.0.0-rc.10", "1.0.0-rc.2"), "numeric pre-release identifiers compare as numbers");
        assert!(is_older("1.0.0-rc.2", "1.0.0-rc.10"));
        assert!(is_older("junk", "0.1.0"), "a version that does not parse never passes the downgrade guard");
    }
}
