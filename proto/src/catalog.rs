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

/// A catalog's `version_hash`: lowercase hex SHA-256 over the entries sorted
/// by name (then type, then hash) of `name \0 type \0 hash \n`.
pub fn version_hash(entries: &[CommandResponse]) -> String {
    version_hash_of(entries.iter().map(|e| (e.name.as_str(), e.r#type.as_str(), e.hash.as_str())))
}

/// [`version_hash`] over `(name, type, hash)` triples: for callers that
/// hold entries by reference, or hashes they computed themselves.
pub fn version_hash_of<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str, &str)> = entries.into_iter().collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for (name, kind, hash) in sorted {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ty: &str, hash: &str) -> CommandResponse {
        CommandResponse { name: name.into(), r#type: ty.into(), hash: hash.into(), ..Default::default() }
    }

    #[test]
    fn entry_hash_is_sha256_hex() {
        assert_eq!(entry_hash(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn version_hash_known_answer_and_order_independence() {
        // Python: sha256(b"a\0function\x0011\nb\0avap\x0022\n").hexdigest()
        let want = "d3e11da056dfb4195e35b3de0d97b6d7bcabc57225cfba91ae1500e51313f066";
        let a = entry("a", TYPE_FUNCTION, "11");
        let b = entry("b", TYPE_AVAP, "22");
        assert_eq!(version_hash(&[a.clone(), b.clone()]), want);
        assert_eq!(version_hash(&[b, a.clone()]), want);
        assert_ne!(version_hash(&[a]), want);
    }
}
