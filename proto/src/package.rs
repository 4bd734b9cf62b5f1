//! The signed AVAP package (WIRE.md section 1).
//!
//! ```text
//! offset  size  field
//! 0       4     magic  "AVAP"  (41 56 41 50)
//! 4       2     format version, big-endian u16 = 1
//! 6       4     payload length, big-endian u32
//! 10      32    HMAC-SHA256(key, bytes[0..10] ++ payload)
//! 42      n     payload
//! ```
//!
//! The key is `AVAP_INTERNAL_KEY` ([`crate::auth::DEFAULT_INTERNAL_KEY`] by
//! default). [`verify`] checks, in order: length >= 42, magic, version,
//! declared length == actual payload length, then the MAC in constant time.
//! Any failure means the package must not be used at all.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The four magic bytes every package starts with.
pub const MAGIC: [u8; 4] = *b"AVAP";
/// The only format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Magic, version and payload length: the bytes the MAC covers before the payload.
pub const HEADER_LEN: usize = 10;
/// Length of the HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Bytes before the payload (header plus MAC): the smallest valid package.
pub const OVERHEAD: usize = HEADER_LEN + MAC_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Why a package was rejected (or could not be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// `pack` only: the payload does not fit the u32 length field.
    #[error("payload of {0} bytes is larger than a package can hold (u32::MAX bytes)")]
    PayloadTooLarge(usize),
    /// Fewer bytes than the 42-byte header and MAC.
    #[error("package of {0} bytes is shorter than the {OVERHEAD}-byte header")]
    TooShort(usize),
    /// The first four bytes are not `AVAP`.
    #[error("bad magic: not an AVAP package")]
    BadMagic,
    /// A format version other than 1.
    #[error("unsupported package format version {0}")]
    UnsupportedVersion(u16),
    /// The header's payload length is not the number of bytes that follow.
    #[error("declared payload length {declared} does not match the actual {actual} bytes")]
    LengthMismatch {
        /// Length in the header.
        declared: u32,
        /// Bytes actually present after the MAC.
        actual: usize,
    },
    /// The MAC does not match: wrong key, or the package was altered.
    #[error("package signature does not match (wrong key or altered package)")]
    BadSignature,
    /// The HMAC implementation refused the key (HMAC accepts any key length,
    /// so this does not happen in practice).
    #[error("invalid HMAC key")]
    InvalidKey,
}

fn mac(key: &[u8], header: &[u8], payload: &[u8]) -> Result<HmacSha256, PackageError> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| PackageError::InvalidKey)?;
    mac.update(header);
    mac.update(payload);
    Ok(mac)
}

/// Builds a signed package around `payload` with `key`.
pub fn pack(key: &[u8], payload: &[u8]) -> Result<Vec<u8>, PackageError> {
    let len = u32::try_from(payload.len()).map_err(|_| PackageError::PayloadTooLarge(payload.len()))?;
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    let tag = mac(key, &out, payload)?.finalize().into_bytes();
    out.extend_from_slice(&tag);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks a package and returns its payload (borrowed from `package`).
pub fn verify<'a>(key: &[u8], package: &'a [u8]) -> Result<&'a [u8], PackageError> {
    if package.len() < OVERHEAD {
        return Err(PackageError::TooShort(package.len()));
    }
    let (header, rest) = package.split_at(HEADER_LEN);
    let (tag, payload) = rest.split_at(MAC_LEN);
    if header[0..4] != MAGIC {
        return Err(PackageError::BadMagic);
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return Err(PackageError::UnsupportedVersion(version));
    }
    let declared = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
    if usize::try_from(declared).ok() != Some(payload.len()) {
        return Err(PackageError::LengthMismatch { declared, actual: payload.len() });
    }
    // `verify_slice` compares in constant time.
    mac(key, header, payload)?.verify_slice(tag).map_err(|_| PackageError::BadSignature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"avap_secure_signature_key_2026";
    const PAYLOAD: &[u8] = b"function f(a) {\n  addResult(a)\n}\n";
    /// Computed independently with Python:
    /// `hdr = b"AVAP" + struct.pack(">HI", 1, len(p)); hdr + hmac.new(key, hdr + p, hashlib.sha256).digest() + p`
    const KNOWN: &str = "41564150000100000021011ced7b259e14386a375369f6a7e5ff208cbb49f8b6d28d03c10992bbeb5a06\
                         66756e6374696f6e2066286129207b0a2020616464526573756c742861290a7d0a";
    /// Same, empty payload.
    const KNOWN_EMPTY: &str = "41564150000100000000ff445c1885cbd8f0b2f779a79e7db19cb7f6b7a896190b472fe6edce95e80457";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("valid hex")
    }

    #[test]
    fn round_trip() {
        let pkg = pack(KEY, PAYLOAD).expect("pack");
        assert_eq!(pkg.len(), OVERHEAD + PAYLOAD.len());
        assert_eq!(verify(KEY, &pkg), Ok(PAYLOAD));
    }

    #[test]
    fn known_answer_vector() {
        assert_eq!(pack(KEY, PAYLOAD).expect("pack"), unhex(KNOWN));
        assert_eq!(verify(KEY, &unhex(KNOWN)), Ok(PAYLOAD));
    }

    #[test]
    fn empty_payload() {
        let pkg = pack(KEY, b"").expect("pack");
        assert_eq!(pkg, unhex(KNOWN_EMPTY));
        assert_eq!(verify(KEY, &pkg), Ok(&b""[..]));
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let pkg = pack(KEY, PAYLOAD).expect("pack");
        for byte in 0..pkg.len() {
            for bit in 0..8 {
                let mut bad = pkg.clone();
                bad[byte] ^= 1 << bit;
                assert!(verify(KEY, &bad).is_err(), "flip of byte {byte} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let pkg = pack(KEY, PAYLOAD).expect("pack");
        for len in 0..pkg.len() {
            let err = verify(KEY, &pkg[..len]).expect_err("truncated package accepted");
            if len < OVERHEAD {
                assert_eq!(err, PackageError::TooShort(len));
            } else {
                assert!(matches!(err, PackageError::LengthMismatch { .. }), "{err:?}");
            }
        }
    }

    #[test]
    fn extension_is_rejected() {
        let mut pkg = pack(KEY, PAYLOAD).expect("pack");
        pkg.push(b'\n');
        assert!(matches!(verify(KEY, &pkg), Err(PackageError::LengthMismatch { .. })));
    }

    #[test]
    fn wrong_key_is_rejected() {
        let pkg = pack(KEY, PAYLOAD).expect("pack");
        assert_eq!(verify(b"avap_secure_signature_key_2027", &pkg), Err(PackageError::BadSignature));
        assert_eq!(verify(b"", &pkg), Err(PackageError::BadSignature));
    }

    #[test]
    fn header_fields_have_their_own_errors() {
        let pkg = pack(KEY, PAYLOAD).expect("pack");
        let mut bad = pkg.clone();
        bad[0] = b'X';
        assert_eq!(verify(KEY, &bad), Err(PackageError::BadMagic));
        let mut bad = pkg.clone();
        bad[5] = 2;
        assert_eq!(verify(KEY, &bad), Err(PackageError::UnsupportedVersion(2)));
        let mut bad = pkg.clone();
        bad[9] ^= 1;
        assert!(matches!(verify(KEY, &bad), Err(PackageError::LengthMismatch { .. })));
        let mut bad = pkg;
        bad[20] ^= 1;
        assert_eq!(verify(KEY, &bad), Err(PackageError::BadSignature));
    }
}
