//! The gRPC auth token (WIRE.md sections 2 and 4).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The metadata key every `DefinitionEngine` call carries.
pub const AUTH_METADATA: &str = "x-avap-auth";
/// The metadata key with which a client says what it is. This project's
/// host sends [`HOST_CLIENT`] and gets the whole catalog; a client that
/// does not (the original language servers) gets only the entries it can
/// run: those of type `function` (WIRE.md section 2, "Who gets what").
pub const CLIENT_METADATA: &str = "x-avap-client";
/// The [`CLIENT_METADATA`] value of this project's host.
pub const HOST_CLIENT: &str = "avap-host";
/// The default `API_KEY` (the token in [`AUTH_METADATA`]).
pub const DEFAULT_API_KEY: &str = "avap_secret_key_2026";
/// The default `AVAP_INTERNAL_KEY` (the package HMAC key). Deployments must
/// set their own; servers warn loudly when this one is in use.
pub const DEFAULT_INTERNAL_KEY: &str = "avap_secure_signature_key_2026";

/// Whether the presented token equals the expected key, in constant time.
///
/// Both sides are hashed to fixed-length SHA-256 digests first and the
/// digests compared with `subtle`, so neither the contents nor the length of
/// either key leaks through timing.
pub fn key_matches(expected: &str, presented: &[u8]) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let presented = Sha256::digest(presented);
    expected.as_slice().ct_eq(presented.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_key() {
        assert!(key_matches(DEFAULT_API_KEY, DEFAULT_API_KEY.as_bytes()));
        assert!(!key_matches(DEFAULT_API_KEY, b"avap_secret_key_2025"));
        assert!(!key_matches(DEFAULT_API_KEY, b"avap_secret_key_2026 "));
        assert!(!key_matches(DEFAULT_API_KEY, b"avap_secret_key_202"));
        assert!(!key_matches(DEFAULT_API_KEY, b""));
        assert!(key_matches("", b""));
    }
}
