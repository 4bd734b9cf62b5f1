//! The live command catalog, and how a catalog from the definition server is
//! vetted before it replaces it.
//!
//! An update is applied all or nothing: every entry's package must verify
//! with `AVAP_INTERNAL_KEY`, every `avap` entry must be one valid function
//! definition named like the entry, and a `guest-vm` entry must pass every
//! step of the guest swap (see `AppState::apply_catalog`). One bad entry and
//! the whole update is refused; the previous catalog stays.

use std::time::SystemTime;

pub mod rollout;
pub mod sync;

use avap_wire::catalog::{TYPE_AVAP, TYPE_FUNCTION, TYPE_GUEST_VM};
use avap_wire::package::{self, PackageError};
use avap_wire::pb::CatalogResponse;
use serde_json::json;
use serde_json::value::RawValue;

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
#[derive(Debug)]
pub struct LiveCatalog {
    pub source: CatalogSource,
    pub version_hash: Option<String>,
    pub entries: usize,
    pub synced_at: Option<SystemTime>,
    /// Names of every entry, for `/health`.
    pub names: Vec<String>,
    /// The guest's `catalog` input field (docs/ABI.md), serialised once per
    /// catalog rather than per request. `None` for the built-in catalog.
    pub guest_json: Option<Box<RawValue>>,
}

impl LiveCatalog {
    pub fn built_in() -> Self {
        LiveCatalog {
            source: CatalogSource::BuiltIn,
            version_hash: None,
            entries: 0,
            synced_at: None,
            names: Vec::new(),
            guest_json: None,
        }
    }
}

/// A catalog from the definition server whose packages all verified; the
/// guest module, if any, still has to pass the swap.
#[derive(Debug)]
pub struct VerifiedCatalog {
    pub version_hash: String,
    pub names: Vec<String>,
    /// `function` entries: run by the built-in of that name, if any.
    pub functions: Vec<String>,
    /// `avap` entries: `(name, source)`.
    pub avap: Vec<(String, String)>,
    /// The `guest-vm` entry's module bytes.
    pub guest_module: Option<Vec<u8>>,
}

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
}

/// Verifies every entry of `response`; the first failure refuses it all.
pub fn verify(response: &CatalogResponse, key: &[u8]) -> Result<VerifiedCatalog, CatalogError> {
    let mut out = VerifiedCatalog {
        version_hash: response.version_hash.clone(),
        names: Vec::with_capacity(response.commands.len()),
        functions: Vec::new(),
        avap: Vec::new(),
        guest_module: None,
    };
    let mut guests = 0;
    for entry in &response.commands {
        let name = &entry.name;
        let payload = package::verify(key, &entry.code)
            .map_err(|source| CatalogError::Integrity { name: name.clone(), source })?;
        if !is_identifier(name) && entry.r#type != TYPE_GUEST_VM {
            return Err(CatalogError::Invalid { name: name.clone(), reason: "name is not an AVAP identifier".into() });
        }
        match entry.r#type.as_str() {
            TYPE_FUNCTION => out.functions.push(name.clone()),
            TYPE_AVAP => {
                let source = std::str::from_utf8(payload).map_err(|_| CatalogError::Invalid {
                    name: name.clone(),
                    reason: "AVAP source is not UTF-8".into(),
                })?;
                out.avap.push((name.clone(), source.to_string()));
            }
            TYPE_GUEST_VM => {
                guests += 1;
                out.guest_module = Some(payload.to_vec());
            }
            other => return Err(CatalogError::UnknownType { name: name.clone(), ty: other.to_string() }),
        }
        out.names.push(name.clone());
    }
    if guests > 1 {
        return Err(CatalogError::SeveralGuests(guests));
    }
    Ok(out)
}

impl VerifiedCatalog {
    /// The guest's `catalog` input: built-ins the catalog holds, its AVAP
    /// functions, and names the host cannot run. `function` entries go in
    /// both lists: the guest runs a built-in of that name and reports any
    /// other as not supported by this host.
    pub fn guest_json(&self) -> Box<RawValue> {
        let functions: Vec<_> =
            self.avap.iter().map(|(name, source)| json!({"name": name, "source": source})).collect();
        let doc = json!({
            "commands": self.functions,
            "functions": functions,
            "unsupported": self.functions,
        });
        // A `Value` always serialises to valid JSON.
        RawValue::from_string(doc.to_string()).unwrap_or_else(|_| empty_raw())
    }

    pub fn into_live(self, guest_json: Box<RawValue>) -> LiveCatalog {
        LiveCatalog {
            source: CatalogSource::Brain,
            version_hash: Some(self.version_hash),
            entries: self.names.len(),
            synced_at: Some(SystemTime::now()),
            names: self.names,
            guest_json: Some(guest_json),
        }
    }
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
    use avap_wire::pb::CommandResponse;

    const KEY: &[u8] = b"test-key";

    fn entry(name: &str, ty: &str, payload: &[u8]) -> CommandResponse {
        avap_wire::catalog::signed_entry(KEY, name, ty, "[]".into(), payload).expect("sign")
    }

    fn catalog(entries: Vec<CommandResponse>) -> CatalogResponse {
        CatalogResponse { total_count: entries.len() as i32, version_hash: "v1".into(), commands: entries }
    }

    #[test]
    fn sorts_entries_by_type() {
        let c = catalog(vec![
            entry("addVar", TYPE_FUNCTION, b"# py"),
            entry("greet", TYPE_AVAP, b"function greet(x) {\n return x\n}"),
            entry("avap-guest-vm", TYPE_GUEST_VM, b"\0asm"),
        ]);
        let v = verify(&c, KEY).expect("verifies");
        assert_eq!(v.functions, ["addVar"]);
        assert_eq!(v.avap[0].0, "greet");
        assert_eq!(v.guest_module.as_deref(), Some(&b"\0asm"[..]));
        let guest: serde_json::Value = serde_json::from_str(v.guest_json().get()).expect("json");
        assert_eq!(guest["commands"], json!(["addVar"]));
        assert_eq!(guest["functions"][0]["name"], json!("greet"));
    }

    #[test]
    fn one_tampered_entry_refuses_the_whole_catalog() {
        let mut bad = entry("greet", TYPE_AVAP, b"function greet() {\n}");
        let last = bad.code.len() - 1;
        bad.code[last] ^= 1;
        let c = catalog(vec![entry("addVar", TYPE_FUNCTION, b"# py"), bad]);
        assert!(matches!(verify(&c, KEY), Err(CatalogError::Integrity { name, .. }) if name == "greet"));
        let c = catalog(vec![entry("addVar", TYPE_FUNCTION, b"# py")]);
        assert!(matches!(verify(&c, b"other-key"), Err(CatalogError::Integrity { .. })));
    }

    #[test]
    fn refuses_unknown_types_bad_names_and_two_guests() {
        let c = catalog(vec![entry("x", "python3", b"")]);
        assert!(matches!(verify(&c, KEY), Err(CatalogError::UnknownType { .. })));
        let c = catalog(vec![entry("no spaces", TYPE_FUNCTION, b"")]);
        assert!(matches!(verify(&c, KEY), Err(CatalogError::Invalid { .. })));
        let c = catalog(vec![entry("g1", TYPE_GUEST_VM, b"a"), entry("g2", TYPE_GUEST_VM, b"b")]);
        assert!(matches!(verify(&c, KEY), Err(CatalogError::SeveralGuests(2))));
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
