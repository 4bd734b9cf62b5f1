//! Keys with one purpose each (WIRE.md section 1, "Key domains").
//!
//! One shared secret, `AVAP_INTERNAL_KEY`, is configured on the brain and on
//! every host. In this project's scheme it never signs anything itself:
//! each purpose uses its own key derived from it, `HMAC-SHA256(secret,
//! "avap-key-domain/v1/" ++ purpose)`, so a MAC made for one purpose never
//! verifies for another. A package from `/api/v1/compile` is signed under
//! [`Domain::Package`] and can never pass as a catalog entry
//! ([`Domain::CatalogEntry`]) or as the catalog's manifest
//! ([`Domain::Manifest`]).
//!
//! In the original servers' scheme ([`KeyScheme::Original`]) catalog
//! entries and the manifest are both signed with the secret itself (what
//! the original servers verify), so those two are not separated from each
//! other there (the manifest's strict JSON format keeps an entry's payload
//! from passing as one); compiled packages still are.
//!
//! Guest modules are not signed with any of these: they carry an Ed25519
//! signature ([`crate::guest_sig`]), and hosts hold only public keys.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a MAC is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A catalog entry's package (brain -> host).
    CatalogEntry,
    /// A package from `/api/v1/compile`, run by `/api/v1/execute`.
    Package,
    /// The catalog's manifest entry (brain -> host).
    Manifest,
}

impl Domain {
    /// The label mixed into the derivation.
    pub fn label(self) -> &'static str {
        match self {
            Domain::CatalogEntry => "catalog-entry",
            Domain::Package => "compiled-package",
            Domain::Manifest => "catalog-manifest",
        }
    }
}

/// The prefix of every derivation label.
pub const DERIVATION_PREFIX: &str = "avap-key-domain/v1/";

/// The key for `domain`: `HMAC-SHA256(secret, DERIVATION_PREFIX ++ label)`.
pub fn derive(secret: &[u8], domain: Domain) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    mac.update(DERIVATION_PREFIX.as_bytes());
    mac.update(domain.label().as_bytes());
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC accepts every key length (RFC 2104 hashes long keys, pads short ones).
    panic!("HMAC-SHA256 refused a key, which it never does")
}

/// The shortest `AVAP_INTERNAL_KEY` the servers take outside `--dev` /
/// `--original-servers`.
pub const MIN_SECRET_BYTES: usize = 32;
/// The shortest `API_KEY` the servers take outside `--dev` / `--original-servers`.
pub const MIN_API_KEY_BYTES: usize = 16;

/// Why a configured key is not taken as a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakKey {
    /// It is the published default (white space around it ignored).
    Published,
    /// It is shorter than the minimum.
    Short { len: usize, min: usize },
}

/// Whether `value`, configured where `published` is the default, is weak.
pub fn weak_key(value: &str, published: &str, min: usize) -> Option<WeakKey> {
    if value.trim() == published {
        Some(WeakKey::Published)
    } else if value.len() < min {
        Some(WeakKey::Short { len: value.len(), min })
    } else {
        None
    }
}

/// Which keys sign catalog entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScheme {
    /// This project's: one derived key per [`Domain`].
    Separated,
    /// The original AVAP servers': catalog entries signed with the shared
    /// secret itself. Compiled packages still use [`Domain::Package`], so
    /// `/api/v1/compile` never signs anything a catalog accepts.
    Original,
}

/// The keys derived from one shared secret.
#[derive(Clone)]
pub struct Keys {
    scheme: KeyScheme,
    secret: Vec<u8>,
    entry: [u8; 32],
    package: [u8; 32],
    manifest: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(secret: &[u8], scheme: KeyScheme) -> Keys {
        Keys {
            scheme,
            secret: secret.to_vec(),
            entry: derive(secret, Domain::CatalogEntry),
            package: derive(secret, Domain::Package),
            manifest: derive(secret, Domain::Manifest),
        }
    }

    pub fn scheme(&self) -> KeyScheme {
        self.scheme
    }

    /// The key of catalog entries under this scheme.
    pub fn catalog_entry(&self) -> &[u8] {
        match self.scheme {
            KeyScheme::Separated => &self.entry,
            KeyScheme::Original => &self.secret,
        }
    }

    /// The key of compiled packages (the same under both schemes).
    pub fn package(&self) -> &[u8] {
        &self.package
    }

    /// Packages `/api/v1/execute` accepts: its own, and under the original
    /// scheme also those the original servers signed with the secret.
    pub fn packages_accepted(&self) -> impl Iterator<Item = &[u8]> {
        let original = (self.scheme == KeyScheme::Original).then_some(&self.secret[..]);
        std::iter::once(&self.package[..]).chain(original)
    }

    /// The key of the catalog manifest. Under the original scheme, the
    /// secret itself, like every other catalog entry (an original server
    /// that verifies every entry then verifies this one too); a compiled
    /// package still never passes as one.
    pub fn manifest(&self) -> &[u8] {
        match self.scheme {
            KeyScheme::Separated => &self.manifest,
            KeyScheme::Original => &self.secret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package;

    #[test]
    fn every_domain_has_its_own_key() {
        let k = Keys::new(b"secret", KeyScheme::Separated);
        let all = [k.catalog_entry(), k.package(), k.manifest(), b"secret"];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Known answer: Python
        // hmac.new(b"secret", b"avap-key-domain/v1/compiled-package", hashlib.sha256).hexdigest()
        assert_eq!(hex::encode(k.package()), "092468ea1f2c06d635a40b357ca2299a66ae0b7c83eaf5298c4320cfe61a5f15");
    }

    #[test]
    fn the_original_scheme_uses_the_secret_for_entries_and_manifests_only() {
        let k = Keys::new(b"secret", KeyScheme::Original);
        assert_eq!(k.catalog_entry(), b"secret");
        assert_eq!(k.manifest(), b"secret");
        assert_eq!(k.package(), derive(b"secret", Domain::Package));
        assert_eq!(k.packages_accepted().collect::<Vec<_>>(), [&derive(b"secret", Domain::Package)[..], b"secret"]);
        let separated = Keys::new(b"secret", KeyScheme::Separated);
        assert_eq!(separated.packages_accepted().collect::<Vec<_>>(), [separated.package()]);
    }

    #[test]
    fn a_compiled_package_never_passes_as_a_catalog_entry() {
        for scheme in [KeyScheme::Separated, KeyScheme::Original] {
            let k = Keys::new(b"secret", scheme);
            let pkg = package::pack(k.package(), b"function f() {\n}").expect("pack");
            assert!(package::verify(k.catalog_entry(), &pkg).is_err(), "{scheme:?}");
            assert!(package::verify(k.manifest(), &pkg).is_err(), "{scheme:?}");
        }
    }
}
