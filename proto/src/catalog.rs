//! Catalog entry types and hashes (see the crate docs for the exact formats).

use sha2::{Digest, Sha256};

use crate::pb::CommandResponse;

/// A command from the original servers: the payload is Python source. AVAP
/// hosts implement the standard commands natively and use only the interface.
pub const TYPE_FUNCTION: &str = "function";
/// A command written in AVAP: the payload is one `function` definition.
pub const TYPE_AVAP: &str = "avap";
/// The guest interpreter: the payload is its wasm module.
pub const TYPE_GUEST_VM: &str = "guest-vm";
/// The catalog entry name of the guest module.
pub const GUEST_VM_ENTRY: &str = "avap-guest-vm";
/// The guest module precompiled for the hosts' engine: the payload is the
/// artifact, its `interface_json` the release's signature of it
/// ([`crate::guest_sig::ArtifactClaim`]).
pub const TYPE_GUEST_ARTIFACT: &str = "guest-vm-artifact";
/// The catalog entry name of the precompiled guest.
pub const GUEST_ARTIFACT_ENTRY: &str = "avap-guest-vm-artifact";

/// An entry's `hash`: lowercase hex SHA-256 of its `code` (the whole signed
/// package).
pub fn entry_hash(code: &[u8]) -> String {
    hex::encode(Sha256::digest(code))
}

/// A signed catalog entry: `payload` packed with `key`, and its hash.
pub fn signed_entry(
    key: &[u8],
    name: &str,
    kind: &str,
    interface_json: String,
    payload: &[u8],
) -> Result<CommandResponse, crate::package::PackageError> {
    let code = crate::package::pack(key, payload)?;
    let hash = entry_hash(&code);
    Ok(CommandResponse { name: name.to_string(), r#type: kind.to_string(), interface_json, code, hash })
}

/// An entry's interface digest: lowercase hex SHA-256 of its
/// `interface_json` as sent (the UTF-8 bytes, nothing normalised).
pub fn interface_hash(interface_json: &str) -> String {
    hex::encode(Sha256::digest(interface_json.as_bytes()))
}

/// What identifies an entry's content: everything a host acts on. Two
/// entries with the same key carry the same name, type, package and
/// interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    pub name: String,
    pub kind: String,
    /// [`entry_hash`] of the code.
    pub hash: String,
    /// [`interface_hash`] of the `interface_json`.
    pub interface: String,
}

impl EntryKey {
    /// The key of `entry` as sent: its `hash` field taken as it is.
    pub fn of(entry: &CommandResponse) -> EntryKey {
        EntryKey {
            name: entry.name.clone(),
            kind: entry.r#type.clone(),
            hash: entry.hash.clone(),
            interface: interface_hash(&entry.interface_json),
        }
    }

    /// The key of `entry` with the hash of its code computed here (its
    /// `hash` field is not read).
    pub fn computed(entry: &CommandResponse) -> EntryKey {
        EntryKey { hash: entry_hash(&entry.code), ..EntryKey::of(entry) }
    }
}

/// A catalog's `version_hash`: lowercase hex SHA-256 over the entries sorted
/// by name (then type, hash, interface digest) of
/// `name \0 type \0 hash \0 interface_hash \n`.
pub fn version_hash(entries: &[CommandResponse]) -> String {
    version_hash_of(entries.iter().map(EntryKey::of))
}

/// [`version_hash`] over entry keys: for callers that computed the hashes
/// themselves ([`EntryKey::computed`]).
pub fn version_hash_of(entries: impl IntoIterator<Item = EntryKey>) -> String {
    let mut sorted: Vec<EntryKey> = entries.into_iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for key in sorted {
        for (i, field) in [&key.name, &key.kind, &key.hash, &key.interface].into_iter().enumerate() {
            if i > 0 {
                h.update([0]);
            }
            h.update(field.as_bytes());
        }
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ty: &str, hash: &str) -> CommandResponse {
        CommandResponse {
            name: name.into(),
            r#type: ty.into(),
            hash: hash.into(),
            interface_json: "[]".into(),
            ..Default::default()
        }
    }

    #[test]
    fn entry_hash_is_sha256_hex() {
        assert_eq!(entry_hash(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn version_hash_known_answer_and_order_independence() {
        // Python: i = sha256(b"[]").hexdigest().encode()
        //         sha256(b"a\0function\x0011\0" + i + b"\nb\0avap\x0022\0" + i + b"\n").hexdigest()
        let want = "2f2bb10d8a0e86959c253f4b80efff5837017be7b7fdfd6216949aac176e5a6e";
        let a = entry("a", TYPE_FUNCTION, "11");
        let b = entry("b", TYPE_AVAP, "22");
        assert_eq!(version_hash(&[a.clone(), b.clone()]), want);
        assert_eq!(version_hash(&[b.clone(), a.clone()]), want);
        assert_ne!(version_hash(std::slice::from_ref(&a)), want);
        // The interface is part of it: one byte changes the hash.
        let mut other = a.clone();
        other.interface_json = "[ ]".into();
        assert_ne!(version_hash(&[other, b]), want);
    }

    #[test]
    fn entry_keys_read_or_compute_the_hash() {
        let e = signed_entry(b"k", "addVar", TYPE_FUNCTION, "[]".into(), b"# py").expect("sign");
        assert_eq!(EntryKey::of(&e), EntryKey::computed(&e));
        let mut lying = e.clone();
        lying.hash = "00".into();
        assert_eq!(EntryKey::of(&lying).hash, "00");
        assert_eq!(EntryKey::computed(&lying), EntryKey::of(&e));
        assert_eq!(interface_hash("[]"), "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
    }
}
