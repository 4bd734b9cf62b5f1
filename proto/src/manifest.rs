//! The catalog's signed manifest (WIRE.md section 2, "The manifest").
//!
//! The brain adds one entry to every catalog it serves: name
//! [`MANIFEST_ENTRY`], type [`TYPE_MANIFEST`], whose `code` is a package
//! signed with the manifest key ([`crate::keys::Domain::Manifest`]) around
//! this JSON:
//!
//! ```json
//! {"format": 2, "serial": 1796000000000, "issued_at": "2026-12-01T18:00:00Z",
//!  "expires_at_ms": 1796003600000,
//!  "version_hash": "<version_hash of every other entry>",
//!  "entries": [{"name": "addVar", "type": "function", "hash": "<entry hash>",
//!               "interface": "<interface hash>"}, ...],
//!  "guest": {"version": "0.4.0", "digest": "sha256:<hex>", "rollout_percent": 100}}
//! ```
//!
//! A host takes a catalog only if its manifest verifies, has not expired,
//! lists exactly the catalog's other entries (name, type, the hash of the
//! code and the hash of the `interface_json`: everything a host acts on; a
//! missing, extra or altered entry refuses it), its `version_hash` is what
//! the host computes from them, and its `serial` is newer than the live
//! catalog's (the same serial must be the same manifest). The serial orders
//! catalogs: an older signed catalog replayed is refused, and a roll-back
//! is a newer manifest that pins an older guest. The expiry bounds how long
//! a recorded catalog can be replayed to a host that has none newer, and
//! how long a link that delivers only keepalives can pass for live: the
//! brain seals its catalog again, under a new serial, well before it
//! expires. The original servers send no manifest; a host in their
//! compatibility mode takes their catalogs without one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{EntryKey, entry_hash, version_hash, version_hash_of};
use crate::package::{self, PackageError};
use crate::pb::CommandResponse;

/// The manifest entry's name.
pub const MANIFEST_ENTRY: &str = "avap-catalog-manifest";
/// The manifest entry's type.
pub const TYPE_MANIFEST: &str = "manifest";
/// The manifest format this crate writes and reads. Format 1 (no
/// interface hashes, no expiry) is refused.
pub const FORMAT: u32 = 2;
/// Largest manifest payload a host reads.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Strictly increasing from one catalog to the next.
    pub serial: u64,
    /// When the brain built it (RFC 3339, informational).
    pub issued_at: String,
    /// Milliseconds since the Unix epoch after which hosts refuse it.
    pub expires_at_ms: u64,
    /// [`version_hash`] of every entry but the manifest.
    pub version_hash: String,
    pub entries: Vec<ManifestEntry>,
    /// The guest this catalog pins, if it carries one.
    pub guest: Option<GuestPin>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// [`crate::catalog::entry_hash`] of the entry's code.
    pub hash: String,
    /// [`crate::catalog::interface_hash`] of the entry's `interface_json`.
    pub interface: String,
}

impl From<EntryKey> for ManifestEntry {
    fn from(k: EntryKey) -> Self {
        ManifestEntry { name: k.name, kind: k.kind, hash: k.hash, interface: k.interface }
    }
}

/// The guest module a catalog pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestPin {
    pub version: String,
    /// `sha256:<hex>` of the module.
    pub digest: String,
    /// Hosts whose roll-out bucket (0..100, [`rollout_bucket`]) is below
    /// this take the module; the others keep the guest they run. 100: all.
    pub rollout_percent: u8,
}

/// A host's roll-out bucket: the first two bytes of SHA-256 of its id,
/// modulo 100. Stable for a host id, spread evenly across ids.
pub fn rollout_bucket(host_id: &str) -> u8 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(host_id.as_bytes());
    (u16::from_be_bytes([d[0], d[1]]) % 100) as u8
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest's package failed verification: {0}")]
    Integrity(PackageError),
    #[error("the manifest is {0} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the manifest is not valid: {0}")]
    Malformed(String),
    #[error("manifest format {0} is not supported (expected {FORMAT})")]
    Format(u32),
    #[error("the catalog does not match its manifest: {0}")]
    Mismatch(String),
    #[error(
        "the manifest (serial {serial}) expired at {expires_at_ms} ms since the epoch, {late_ms} ms ago by this host's clock"
    )]
    Expired { serial: u64, expires_at_ms: u64, late_ms: u64 },
}

impl Manifest {
    /// The manifest of `entries` (none of them a manifest), valid until
    /// `expires_at_ms`.
    pub fn describe(
        serial: u64,
        issued_at: String,
        expires_at_ms: u64,
        entries: &[CommandResponse],
        guest: Option<GuestPin>,
    ) -> Manifest {
        let mut listed: Vec<ManifestEntry> = entries.iter().map(|e| EntryKey::of(e).into()).collect();
        listed.sort();
        Manifest {
            format: FORMAT,
            serial,
            issued_at,
            expires_at_ms,
            version_hash: version_hash(entries),
            entries: listed,
            guest,
        }
    }

    /// The manifest as a catalog entry, signed with `manifest_key`.
    pub fn to_entry(&self, manifest_key: &[u8]) -> Result<CommandResponse, PackageError> {
        // A struct of strings and numbers always serialises.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let code = package::pack(manifest_key, &payload)?;
        Ok(CommandResponse {
            name: MANIFEST_ENTRY.into(),
            r#type: TYPE_MANIFEST.into(),
            interface_json: "[]".into(),
            hash: entry_hash(&code),
            code,
        })
    }

    /// Verifies and reads a manifest entry.
    pub fn open(entry: &CommandResponse, manifest_key: &[u8]) -> Result<Manifest, ManifestError> {
        let payload = package::verify(manifest_key, &entry.code).map_err(ManifestError::Integrity)?;
        if payload.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(payload.len()));
        }
        // The format first, so an older brain's manifest is named as such
        // rather than as a missing field.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format = serde_json::from_slice(payload).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if format.format != FORMAT {
            return Err(ManifestError::Format(format.format));
        }
        let manifest: Manifest =
            serde_json::from_slice(payload).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if manifest.guest.as_ref().is_some_and(|g| g.rollout_percent > 100) {
            return Err(ManifestError::Malformed("rollout_percent over 100".into()));
        }
        Ok(manifest)
    }

    /// Checks that `entries` (every entry but the manifest) are exactly the
    /// ones listed, each with the hash of its own code and of its own
    /// interface.
    pub fn check(&self, entries: &[&CommandResponse]) -> Result<(), ManifestError> {
        let mismatch = |why: String| Err(ManifestError::Mismatch(why));
        let mut present: Vec<ManifestEntry> = Vec::with_capacity(entries.len());
        for e in entries {
            let key = EntryKey::computed(e);
            if e.hash != key.hash {
                return mismatch(format!("entry `{}`: its hash is not the hash of its code", e.name));
            }
            present.push(key.into());
        }
        present.sort();
        let mut listed = self.entries.clone();
        listed.sort();
        if let Some(twice) = listed.windows(2).find(|w| w[0].name == w[1].name) {
            return mismatch(format!("entry `{}` is listed twice", twice[0].name));
        }
        if present != listed {
            // Sets, not a scan per entry: a 20,000-entry catalog stays cheap.
            let present_set: BTreeSet<&ManifestEntry> = present.iter().collect();
            let listed_set: BTreeSet<&ManifestEntry> = listed.iter().collect();
            let missing = listed_set.difference(&present_set).next();
            let extra = present_set.difference(&listed_set).next();
            return match (missing, extra) {
                (Some(m), Some(x)) if (&m.name, &m.kind, &m.hash) == (&x.name, &x.kind, &x.hash) => mismatch(format!(
                    "entry `{}` ({}): its interface_json is not the one the manifest lists (altered on the way?)",
                    x.name, x.kind
                )),
                (Some(m), Some(x)) if (&m.name, &m.kind) == (&x.name, &x.kind) => mismatch(format!(
                    "entry `{}` ({}): its code is not the one the manifest lists (altered on the way?)",
                    x.name, x.kind
                )),
                (Some(m), _) => mismatch(format!("entry `{}` ({}) is listed but not in the catalog", m.name, m.kind)),
                (_, Some(x)) => mismatch(format!("entry `{}` ({}) is in the catalog but not listed", x.name, x.kind)),
                _ => mismatch("an entry is in the catalog twice".into()),
            };
        }
        let computed = version_hash_of(entries.iter().map(|e| EntryKey::computed(e)));
        if computed != self.version_hash {
            return mismatch(format!("version_hash {} is not the entries' {computed}", self.version_hash));
        }
        Ok(())
    }

    /// Refuses a manifest whose expiry is before `now_ms` (milliseconds
    /// since the Unix epoch, the host's clock).
    pub fn check_fresh(&self, now_ms: u64) -> Result<(), ManifestError> {
        if now_ms > self.expires_at_ms {
            return Err(ManifestError::Expired {
                serial: self.serial,
                expires_at_ms: self.expires_at_ms,
                late_ms: now_ms - self.expires_at_ms,
            });
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch by this machine's clock (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::signed_entry;

    const LATER: u64 = u64::MAX;

    fn entries() -> Vec<CommandResponse> {
        vec![
            signed_entry(b"k", "addVar", "function", r#"[{"item":"targetVarName"}]"#.into(), b"# a").expect("sign"),
            signed_entry(b"k", "twice", "avap", "[]".into(), b"function twice(x) {\n}").expect("sign"),
        ]
    }

    #[test]
    fn a_manifest_round_trips_and_checks_its_entries() {
        let list = entries();
        let m = Manifest::describe(7, "2026-12-01T00:00:00Z".into(), LATER, &list, None);
        let entry = m.to_entry(b"mk").expect("entry");
        let back = Manifest::open(&entry, b"mk").expect("opens");
        assert_eq!(back, m);
        assert!(matches!(Manifest::open(&entry, b"other"), Err(ManifestError::Integrity(_))));
        let refs: Vec<&CommandResponse> = list.iter().collect();
        assert_eq!(back.check(&refs), Ok(()));
        assert!(matches!(back.check(&refs[..1]), Err(ManifestError::Mismatch(_))), "a partial catalog");
        let mut altered = list.clone();
        altered[1] = signed_entry(b"k", "twice", "avap", "[]".into(), b"function twice(y) {\n}").expect("sign");
        let refs: Vec<&CommandResponse> = altered.iter().collect();
        let err = back.check(&refs).expect_err("a swapped entry");
        assert!(err.to_string().contains("its code is not the one"), "{err}");
        let mut lying = list;
        lying[0].hash = lying[1].hash.clone();
        let refs: Vec<&CommandResponse> = lying.iter().collect();
        assert!(matches!(back.check(&refs), Err(ManifestError::Mismatch(_))), "a hash that is not the code's");
    }

    /// Everything a host acts on is signed: one byte of an entry's
    /// `interface_json` changed refuses the catalog, though its package and
    /// hash are intact.
    #[test]
    fn an_altered_interface_does_not_match_the_manifest() {
        let list = entries();
        let m = Manifest::describe(7, "x".into(), LATER, &list, None);
        for at in 0..list[0].interface_json.len() {
            let mut altered = list.clone();
            let mut bytes = altered[0].interface_json.clone().into_bytes();
            bytes[at] ^= 0x20;
            altered[0].interface_json = String::from_utf8_lossy(&bytes).into_owned();
            let refs: Vec<&CommandResponse> = altered.iter().collect();
            let err = m.check(&refs).expect_err("an altered interface");
            assert!(err.to_string().contains("`addVar` (function): its interface_json"), "{err}");
        }
    }

    #[test]
    fn older_formats_and_expired_manifests_are_refused() {
        let list = entries();
        let m = Manifest::describe(7, "x".into(), 1_000, &list, None);
        assert_eq!(m.check_fresh(1_000), Ok(()));
        assert_eq!(m.check_fresh(1_001), Err(ManifestError::Expired { serial: 7, expires_at_ms: 1_000, late_ms: 1 }));
        // A format 1 manifest (an older brain): named as such.
        let v1 = br#"{"format":1,"serial":7,"issued_at":"x","version_hash":"","entries":[],"guest":null}"#;
        let entry = CommandResponse { code: package::pack(b"mk", v1).expect("pack"), ..Default::default() };
        assert_eq!(Manifest::open(&entry, b"mk"), Err(ManifestError::Format(1)));
        // Unknown fields are refused.
        let mut value = serde_json::to_value(&m).expect("json");
        value["extra"] = serde_json::json!(1);
        let code = package::pack(b"mk", value.to_string().as_bytes()).expect("pack");
        let entry = CommandResponse { code, ..Default::default() };
        assert!(matches!(Manifest::open(&entry, b"mk"), Err(ManifestError::Malformed(_))));
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(rollout_bucket("host-a"), rollout_bucket("host-a"));
        let buckets: std::collections::BTreeSet<u8> = (0..1000).map(|i| rollout_bucket(&format!("h{i}"))).collect();
        assert!(buckets.len() > 90, "{}", buckets.len());
        assert!(buckets.iter().all(|b| *b < 100));
    }
}
