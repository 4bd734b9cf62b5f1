//! Guest modules signed with Ed25519 (WIRE.md section 2, "The guest entry").
//!
//! A guest module sees every request and every response, so replacing it
//! takes a private key that no host holds: a release signs the module
//! (`avap-brain sign-guest`), the brain serves the signature beside it, and a
//! host takes a module only if one of its `AVAP_GUEST_KEYS` verifies it.
//!
//! The signature covers the module's SHA-256 digest under a fixed context,
//! `"avap-guest-module/v1\0" ++ sha256(module)`, and travels in the guest
//! entry's `interface_json`:
//!
//! ```json
//! {"signature": {"alg": "ed25519", "key": "<key id>", "sig": "<base64, 64 bytes>"}}
//! ```
//!
//! A key id is the first 16 hex digits of SHA-256 of the 32-byte public key;
//! public keys are written as 64 hex digits, secret keys as the 64 hex digits
//! of their 32-byte seed.
//!
//! The `.sig` file `sign-guest` writes beside a module ([`SignatureFile`])
//! also carries the signer's public key, so the brain can check that a
//! module and its `.sig` belong together before it publishes them (a
//! half-copied pair waits) without holding any key itself. That check is
//! not trust: hosts still verify against their own `AVAP_GUEST_KEYS`.
//!
//! The same keys sign a guest's *precompiled artifact* (WIRE.md, "The
//! precompiled guest"): the module compiled to machine code for one engine
//! configuration, which a host may load instead of compiling. Its
//! signature ([`ArtifactClaim`]) binds four SHA-256 digests under its own
//! context: the artifact's bytes, the module as published, the module as
//! the host compiles it, and the engine's identity
//! ([`ArtifactStatement::message`]). A host recomputes all four itself and
//! verifies the signature over its own values, so a claim that names
//! another module or another engine is refused before any of its bytes are
//! used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is signed before the module's digest.
pub const CONTEXT: &[u8] = b"avap-guest-module/v1\0";
/// What is signed before a precompiled artifact's four digests.
pub const ARTIFACT_CONTEXT: &[u8] = b"avap-guest-artifact/v1\0";
/// The only algorithm.
pub const ALG: &str = "ed25519";

/// The published development key's seed. Hosts trust its public key only
/// with `--dev`; a brain signs with it only with `--dev`.
pub fn dev_signing_key() -> GuestSigningKey {
    let seed: [u8; 32] =
        Sha256::digest(b"avap development guest signing key: published, trusted only with --dev").into();
    GuestSigningKey(SigningKey::from_bytes(&seed))
}

/// Why a guest module's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestSigError {
    #[error("the guest module is not signed (its entry's interface_json has no \"signature\")")]
    NotSigned,
    #[error("the guest module's signature is malformed: {0}")]
    Malformed(String),
    #[error("the guest module is signed by key {0}, which this host does not trust (AVAP_GUEST_KEYS)")]
    UnknownKey(String),
    #[error("the guest module's signature by key {0} does not verify (altered module or forged signature)")]
    BadSignature(String),
    #[error("not a key: {0}")]
    BadKey(String),
}

/// A public key hosts trust.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestPublicKey(VerifyingKey);

impl std::fmt::Debug for GuestPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestPublicKey({})", self.id())
    }
}

impl std::fmt::Display for GuestPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl std::str::FromStr for GuestPublicKey {
    type Err = GuestSigError;

    /// 64 hex digits.
    fn from_str(text: &str) -> Result<Self, GuestSigError> {
        let bytes: [u8; 32] = hex32(text.trim())?;
        VerifyingKey::from_bytes(&bytes)
            .map(GuestPublicKey)
            .map_err(|_| GuestSigError::BadKey("not an Ed25519 public key".into()))
    }
}

impl GuestPublicKey {
    /// The key's id: the first 16 hex digits of SHA-256 of its bytes.
    pub fn id(&self) -> String {
        key_id(self.0.as_bytes())
    }
}

fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn hex32(text: &str) -> Result<[u8; 32], GuestSigError> {
    let bytes = hex::decode(text).map_err(|e| GuestSigError::BadKey(format!("expected 64 hex digits: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| GuestSigError::BadKey(format!("expected 32 bytes, got {}", b.len())))
}

/// A release's secret key.
pub struct GuestSigningKey(SigningKey);

impl std::fmt::Debug for GuestSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestSigningKey({})", self.public().id())
    }
}

impl GuestSigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<GuestSigningKey, GuestSigError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| GuestSigError::BadKey(format!("no randomness: {e}")))?;
        Ok(GuestSigningKey(SigningKey::from_bytes(&seed)))
    }

    /// From the 64 hex digits of its seed (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<GuestSigningKey, GuestSigError> {
        Ok(GuestSigningKey(SigningKey::from_bytes(&hex32(text.trim())?)))
    }

    /// The 64 hex digits of the seed (what a key file holds).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn public(&self) -> GuestPublicKey {
        GuestPublicKey(self.0.verifying_key())
    }

    /// Signs `module`.
    pub fn sign(&self, module: &[u8]) -> GuestSignature {
        self.sign_message(&message(module))
    }

    fn sign_message(&self, message: &[u8]) -> GuestSignature {
        let sig = self.0.sign(message);
        GuestSignature { alg: ALG.into(), key: self.public().id(), sig: BASE64.encode(sig.to_bytes()) }
    }

    /// Signs a precompiled artifact: what `statement` says of it, for an
    /// `.cwasm.sig` file.
    pub fn sign_artifact(&self, statement: &ArtifactStatement) -> ArtifactSignatureFile {
        let GuestSignature { alg, key, sig } = self.sign_message(&statement.message());
        ArtifactSignatureFile {
            alg,
            key,
            sig,
            public: self.public().to_string(),
            module: digest_text(&statement.module),
            compiled: digest_text(&statement.compiled),
            engine: hex::encode(statement.engine),
        }
    }

    /// Signs `module` for a `.sig` file: the signature and the public key.
    pub fn sign_file(&self, module: &[u8]) -> SignatureFile {
        let GuestSignature { alg, key, sig } = self.sign(module);
        SignatureFile { alg, key, sig, public: Some(self.public().to_string()) }
    }
}

/// A `.sig` file as `avap-brain sign-guest` writes it: the signature, and
/// the public key that verifies it (files written before it was added have
/// none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub alg: String,
    pub key: String,
    pub sig: String,
    /// 64 hex digits: the signer's public key, whose id must be `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
}

impl SignatureFile {
    /// The signature as it travels to hosts (without the public key).
    pub fn signature(&self) -> GuestSignature {
        GuestSignature { alg: self.alg.clone(), key: self.key.clone(), sig: self.sig.clone() }
    }

    /// Checks that this file's signature is of `module`, with its own
    /// public key or one of `known`. `UnknownKey` when it carries no public
    /// key and its key is none of `known`: then nothing can be said.
    pub fn check(&self, module: &[u8], known: &[GuestPublicKey]) -> Result<GuestSignature, GuestSigError> {
        let mut keys = known.to_vec();
        if let Some(public) = &self.public {
            let public: GuestPublicKey = public.parse()?;
            if !public.id().eq_ignore_ascii_case(&self.key) {
                return Err(GuestSigError::Malformed(format!(
                    "the public key's id is {}, the signature names key {}",
                    public.id(),
                    self.key
                )));
            }
            keys.push(public);
        }
        let signature = self.signature();
        signature.verify(module, &keys)?;
        Ok(signature)
    }
}

fn message(module: &[u8]) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(&Sha256::digest(module));
    m
}

/// A module's signature, as it travels (and as `*.sig` files hold it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSignature {
    pub alg: String,
    /// The signing key's id.
    pub key: String,
    /// Base64 of the 64-byte signature.
    pub sig: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    signature: Option<GuestSignature>,
}

impl GuestSignature {
    /// The guest entry's `interface_json` carrying this signature.
    pub fn to_interface_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(&Envelope { signature: Some(self.clone()) }).unwrap_or_default()
    }

    /// Reads the signature from a guest entry's `interface_json` (at most
    /// 4 KiB; `[]` or `{}` mean "not signed").
    pub fn from_interface_json(text: &str) -> Result<GuestSignature, GuestSigError> {
        if text.len() > 4096 {
            return Err(GuestSigError::Malformed(format!("interface_json of {} bytes", text.len())));
        }
        match text.trim() {
            "" | "[]" | "{}" => return Err(GuestSigError::NotSigned),
            _ => {}
        }
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| GuestSigError::Malformed(format!("interface_json: {e}")))?;
        envelope.signature.ok_or(GuestSigError::NotSigned)
    }

    /// Checks the signature of `module` against `trusted`; returns the id
    /// of the key that signed it.
    pub fn verify(&self, module: &[u8], trusted: &[GuestPublicKey]) -> Result<String, GuestSigError> {
        self.verify_message(&message(module), trusted)
    }

    fn verify_message(&self, message: &[u8], trusted: &[GuestPublicKey]) -> Result<String, GuestSigError> {
        if self.alg != ALG {
            return Err(GuestSigError::Malformed(format!("algorithm {:?}, expected {ALG:?}", self.alg)));
        }
        let key = trusted
            .iter()
            .find(|k| k.id().eq_ignore_ascii_case(&self.key))
            .ok_or_else(|| GuestSigError::UnknownKey(self.key.clone()))?;
        let bytes = BASE64.decode(&self.sig).map_err(|e| GuestSigError::Malformed(format!("sig: {e}")))?;
        let sig = Signature::from_slice(&bytes).map_err(|_| GuestSigError::Malformed("sig is not 64 bytes".into()))?;
        key.0.verify_strict(message, &sig).map_err(|_| GuestSigError::BadSignature(self.key.clone()))?;
        Ok(self.key.clone())
    }
}

/// What the signature of a precompiled artifact says: these bytes are the
/// module of digest `module`, in the form `compiled` (what a host compiles:
/// the module as the snapshot tool instruments it), compiled for the engine
/// whose identity is `engine`. Each field is 32 bytes: SHA-256 digests, and
/// the host's engine identity (`avap_host::runtime::engine_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactStatement {
    /// SHA-256 of the artifact's bytes.
    pub artifact: [u8; 32],
    /// SHA-256 of the guest module as published (the guest entry's payload).
    pub module: [u8; 32],
    /// SHA-256 of the bytes that were compiled.
    pub compiled: [u8; 32],
    /// The engine's identity.
    pub engine: [u8; 32],
}

impl ArtifactStatement {
    /// The 151 bytes signed: [`ARTIFACT_CONTEXT`], then the artifact's,
    /// the module's and the compiled form's digests and the engine id.
    pub fn message(&self) -> Vec<u8> {
        [ARTIFACT_CONTEXT, &self.artifact, &self.module, &self.compiled, &self.engine].concat()
    }
}

/// `sha256:<64 hex digits>`.
fn digest_text(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Reads `sha256:<64 hex digits>` (`what` names the field in errors).
fn parse_digest(text: &str, what: &str) -> Result<[u8; 32], ArtifactError> {
    let hex =
        text.strip_prefix("sha256:").ok_or_else(|| ArtifactError::Malformed(format!("{what} is not sha256:<hex>")))?;
    parse_hex32(hex, what)
}

fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32], ArtifactError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ArtifactError::Malformed(format!("{what} is not 64 hex digits")))
}

/// Why a precompiled artifact was not taken. Never a reason to refuse a
/// catalog: the host compiles the module instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact is not signed")]
    NotSigned,
    #[error("the artifact's signature is malformed: {0}")]
    Malformed(String),
    #[error("the artifact is of module {artifact_of}, not of the guest module {module}")]
    OtherModule { artifact_of: String, module: String },
    #[error(
        "the artifact was compiled from {claimed}, and this host compiles the module as {here} (another \
         version of the host's snapshot tool?)"
    )]
    OtherCompiledForm { claimed: String, here: String },
    #[error(
        "the artifact was compiled for engine {built_for}, and this host's engine is {here} (precompile with the \
         `avap` of this host's release, on a machine with the hosts' CPU features)"
    )]
    OtherEngine { built_for: String, here: String },
    #[error("the artifact's {0}")]
    Signature(GuestSigError),
}

/// A precompiled artifact's signature and what it claims, as it travels in
/// the artifact entry's `interface_json`:
///
/// ```json
/// {"signature": {"alg": "ed25519", "key": "<key id>", "sig": "<base64>"},
///  "module": "sha256:<hex>", "compiled": "sha256:<hex>", "engine": "<64 hex digits>"}
/// ```
///
/// The claimed digests only name what the artifact is for (so a refusal
/// can say why); the signature is checked over the values the host
/// computes itself ([`ArtifactClaim::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactClaim {
    pub signature: Option<GuestSignature>,
    pub module: String,
    pub compiled: String,
    pub engine: String,
}

impl ArtifactClaim {
    /// The artifact entry's `interface_json`.
    pub fn to_interface_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an artifact entry's `interface_json` (at most 4 KiB).
    pub fn from_interface_json(text: &str) -> Result<ArtifactClaim, ArtifactError> {
        if text.len() > 4096 {
            return Err(ArtifactError::Malformed(format!("interface_json of {} bytes", text.len())));
        }
        if matches!(text.trim(), "" | "[]" | "{}") {
            return Err(ArtifactError::NotSigned);
        }
        serde_json::from_str(text).map_err(|e| ArtifactError::Malformed(format!("interface_json: {e}")))
    }

    /// Checks that this claim is about `actual` (what the host computed:
    /// the artifact it holds, the guest module it is taking, the form it
    /// compiles it in, its own engine), then the signature over `actual`
    /// with one of `trusted`. Returns the signing key's id.
    pub fn verify(&self, actual: &ArtifactStatement, trusted: &[GuestPublicKey]) -> Result<String, ArtifactError> {
        let signature = self.signature.as_ref().ok_or(ArtifactError::NotSigned)?;
        if parse_digest(&self.module, "module")? != actual.module {
            return Err(ArtifactError::OtherModule {
                artifact_of: self.module.clone(),
                module: digest_text(&actual.module),
            });
        }
        if parse_hex32(&self.engine, "engine")? != actual.engine {
            return Err(ArtifactError::OtherEngine {
                built_for: self.engine.clone(),
                here: hex::encode(actual.engine),
            });
        }
        if parse_digest(&self.compiled, "compiled")? != actual.compiled {
            return Err(ArtifactError::OtherCompiledForm {
                claimed: self.compiled.clone(),
                here: digest_text(&actual.compiled),
            });
        }
        signature.verify_message(&actual.message(), trusted).map_err(ArtifactError::Signature)
    }
}

/// An `.cwasm.sig` file as `avap precompile` writes it beside the
/// artifact: the signature, the signer's public key, and what the artifact
/// is (the claim's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSignatureFile {
    pub alg: String,
    pub key: String,
    pub sig: String,
    /// 64 hex digits: the signer's public key, whose id must be `key`.
    pub public: String,
    pub module: String,
    pub compiled: String,
    pub engine: String,
}

impl ArtifactSignatureFile {
    /// What travels to hosts (without the public key).
    pub fn claim(&self) -> ArtifactClaim {
        ArtifactClaim {
            signature: Some(GuestSignature { alg: self.alg.clone(), key: self.key.clone(), sig: self.sig.clone() }),
            module: self.module.clone(),
            compiled: self.compiled.clone(),
            engine: self.engine.clone(),
        }
    }

    /// Checks that this file signs `artifact` as an artifact of `module`,
    /// with its own public key: what the brain can check without an engine
    /// (the compiled form and the engine are the hosts' to check). Not
    /// trust: hosts verify against their own keys.
    pub fn check(&self, artifact: &[u8], module: &[u8]) -> Result<ArtifactClaim, ArtifactError> {
        let public: GuestPublicKey = self.public.parse().map_err(ArtifactError::Signature)?;
        if !public.id().eq_ignore_ascii_case(&self.key) {
            return Err(ArtifactError::Malformed(format!(
                "the public key's id is {}, the signature names key {}",
                public.id(),
                self.key
            )));
        }
        let statement = ArtifactStatement {
            artifact: Sha256::digest(artifact).into(),
            module: Sha256::digest(module).into(),
            compiled: parse_digest(&self.compiled, "compiled")?,
            engine: parse_hex32(&self.engine, "engine")?,
        };
        let claim = self.claim();
        claim.verify(&statement, &[public])?;
        Ok(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_only_with_the_trusted_key() {
        let release = GuestSigningKey::generate().expect("key");
        let other = GuestSigningKey::generate().expect("key");
        let module = b"\0asm\x01\0\0\0";
        let sig = release.sign(module);
        let json = sig.to_interface_json();
        let back = GuestSignature::from_interface_json(&json).expect("parses");
        assert_eq!(back.verify(module, &[other.public(), release.public()]), Ok(release.public().id()));
        assert_eq!(back.verify(module, &[other.public()]), Err(GuestSigError::UnknownKey(release.public().id())));
        let mut altered = module.to_vec();
        altered.push(0);
        assert!(matches!(back.verify(&altered, &[release.public()]), Err(GuestSigError::BadSignature(_))));
        assert_eq!(GuestSignature::from_interface_json("[]"), Err(GuestSigError::NotSigned));
    }

    #[test]
    fn a_signature_file_checks_itself_with_its_public_key() {
        let release = GuestSigningKey::generate().expect("key");
        let module = b"\0asm\x01\0\0\0";
        let file = release.sign_file(module);
        let text = serde_json::to_string_pretty(&file).expect("json");
        assert!(text.contains("\"public\""), "{text}");
        let back: SignatureFile = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.check(module, &[]), Ok(release.sign(module)));
        assert!(matches!(back.check(b"\0asm\x01\0\0\0\0", &[]), Err(GuestSigError::BadSignature(_))));
        // Another key's public key under this key's id: malformed.
        let other = GuestSigningKey::generate().expect("key");
        let swapped = SignatureFile { public: Some(other.public().to_string()), ..file.clone() };
        assert!(matches!(swapped.check(module, &[]), Err(GuestSigError::Malformed(_))));
        // A file without a public key is checked only with a key known here.
        let old: SignatureFile = serde_json::from_str(&serde_json::to_string(&release.sign(module)).expect("json"))
            .expect("an older .sig parses");
        assert_eq!(old.public, None);
        assert!(matches!(old.check(module, &[]), Err(GuestSigError::UnknownKey(_))));
        assert!(old.check(module, &[release.public()]).is_ok());
        // What travels to hosts has no public key.
        assert!(!old.signature().to_interface_json().contains("public"));
        assert!(!file.signature().to_interface_json().contains("public"));
    }

    #[test]
    fn keys_round_trip_as_hex() {
        let k = GuestSigningKey::generate().expect("key");
        let again = GuestSigningKey::from_hex(&format!("  {}\n", k.to_hex())).expect("hex");
        assert_eq!(again.public(), k.public());
        let public: GuestPublicKey = k.public().to_string().parse().expect("public");
        assert_eq!(public, k.public());
        assert!("abcd".parse::<GuestPublicKey>().is_err());
        assert_ne!(dev_signing_key().public(), k.public());
    }

    fn statement(artifact: &[u8], module: &[u8]) -> ArtifactStatement {
        ArtifactStatement {
            artifact: Sha256::digest(artifact).into(),
            module: Sha256::digest(module).into(),
            compiled: Sha256::digest(b"the instrumented module").into(),
            engine: [7; 32],
        }
    }

    #[test]
    fn an_artifact_signature_binds_the_artifact_the_module_the_compiled_form_and_the_engine() {
        let release = GuestSigningKey::generate().expect("key");
        let (artifact, module) = (b"machine code".as_slice(), b"\0asm\x01\0\0\0".as_slice());
        let good = statement(artifact, module);
        let file = release.sign_artifact(&good);
        let text = serde_json::to_string_pretty(&file).expect("json");
        let back: ArtifactSignatureFile = serde_json::from_str(&text).expect("parses");
        let claim = back.check(artifact, module).expect("the brain's check");
        assert!(!claim.to_interface_json().contains("public"), "what travels has no public key");
        let claim = ArtifactClaim::from_interface_json(&claim.to_interface_json()).expect("parses");
        assert_eq!(claim.verify(&good, &[release.public()]), Ok(release.public().id()));

        // Each of the four, changed: refused, and said which.
        let other_artifact = ArtifactStatement { artifact: [1; 32], ..good };
        assert!(matches!(
            claim.verify(&other_artifact, &[release.public()]),
            Err(ArtifactError::Signature(GuestSigError::BadSignature(_)))
        ));
        let other_module = ArtifactStatement { module: [2; 32], ..good };
        assert!(matches!(claim.verify(&other_module, &[release.public()]), Err(ArtifactError::OtherModule { .. })));
        let other_form = ArtifactStatement { compiled: [3; 32], ..good };
        assert!(matches!(claim.verify(&other_form, &[release.public()]), Err(ArtifactError::OtherCompiledForm { .. })));
        let other_engine = ArtifactStatement { engine: [4; 32], ..good };
        let err = claim.verify(&other_engine, &[release.public()]).expect_err("another engine");
        assert!(err.to_string().contains(&hex::encode([7u8; 32])), "names the engine it was built for: {err}");
        assert!(err.to_string().contains(&hex::encode([4u8; 32])), "and this one: {err}");

        // A key the host does not hold; no signature; a claim that lies
        // about its engine to pass the comparison.
        let stranger = GuestSigningKey::generate().expect("key");
        assert!(matches!(
            claim.verify(&good, &[stranger.public()]),
            Err(ArtifactError::Signature(GuestSigError::UnknownKey(_)))
        ));
        let unsigned = ArtifactClaim { signature: None, ..claim.clone() };
        assert_eq!(unsigned.verify(&good, &[release.public()]), Err(ArtifactError::NotSigned));
        assert_eq!(ArtifactClaim::from_interface_json("[]"), Err(ArtifactError::NotSigned));
        let lying = ArtifactClaim { engine: hex::encode([4u8; 32]), ..claim.clone() };
        assert!(matches!(
            lying.verify(&other_engine, &[release.public()]),
            Err(ArtifactError::Signature(GuestSigError::BadSignature(_)))
        ));
        // A module's signature is not an artifact's, and the other way round.
        let module_sig = release.sign(module);
        let as_artifact = ArtifactClaim { signature: Some(module_sig), ..claim.clone() };
        assert!(as_artifact.verify(&good, &[release.public()]).is_err());
        let artifact_sig = claim.signature.clone().expect("signed");
        assert!(artifact_sig.verify(module, &[release.public()]).is_err());

        // The brain's check: another module, or an artifact being copied.
        assert!(matches!(back.check(artifact, b"\0asm other"), Err(ArtifactError::OtherModule { .. })));
        assert!(matches!(back.check(b"half a copy", module), Err(ArtifactError::Signature(_))));
        let swapped = ArtifactSignatureFile { public: stranger.public().to_string(), ..back.clone() };
        assert!(matches!(swapped.check(artifact, module), Err(ArtifactError::Malformed(_))));
        assert!(ArtifactClaim::from_interface_json(r#"{"module":"x","compiled":"y","engine":"z","more":1}"#).is_err());
    }

    /// The development key is published: its id is pinned here (and in the
    /// fuzz corpus), and ids match whatever their case.
    #[test]
    fn the_development_key_is_the_published_one() {
        assert_eq!(dev_signing_key().public().id(), "0658e5c6cca71d82");
        let module = b"\0asm\x01\0\0\0";
        let mut sig = dev_signing_key().sign(module);
        sig.key = sig.key.to_uppercase();
        assert!(sig.verify(module, &[dev_signing_key().public()]).is_ok());
    }
}
