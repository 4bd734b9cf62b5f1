//! Compiled guests this host did not compile just now: its own, kept on
//! disk so that a restart does not compile again (Cranelift takes about
//! half a second for the guest and as much again for each prepared
//! snapshot, and a start waits for both), and a release's precompiled
//! guest, shipped beside the module by the definition server.
//!
//! `wasmtime::Module::deserialize` trusts its input completely (it maps the
//! bytes as machine code), so the one rule here is: **nothing is
//! deserialized that this host did not produce or verify** ([`deserialize`]
//! takes only a [`Vouched`], and only two paths make one):
//!
//! - **its own** ([`ArtifactCache`]): every artifact is authenticated with
//!   HMAC-SHA256 under a key of this host's own (32 random bytes, made on
//!   first use, in `host.key` beside the artifacts); the MAC covers the
//!   digest of the module it was compiled from and the engine's identity
//!   as well as the bytes, so an artifact is taken only for the same module
//!   and the same engine settings;
//! - **a release's** ([`open_signed`]): an Ed25519 signature by one of the
//!   host's `AVAP_GUEST_KEYS` over the artifact's digest, the published
//!   module's, the digest of exactly what this host would compile (the
//!   module as the snapshot tool instruments it) and this engine's identity
//!   ([`avap_wire::guest_sig::ArtifactStatement`]), all four computed here.
//!
//! wasmtime checks its own version and settings again when it reads one.
//! Anything that does not verify is ignored (and compiled), never an error.
//!
//! The directory is made private to this user (0700, files 0600), and a
//! directory that others may write or that belongs to another user is not
//! used at all: whoever can write there could only replace what this user
//! could replace anyway.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use avap_wire::guest_sig::{ArtifactClaim, ArtifactError, ArtifactStatement, GuestPublicKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// What an artifact file starts with; the version is in it.
const MAGIC: &[u8; 8] = b"AVAPART1";
/// The MAC's domain, so the host key signs nothing else by accident.
const DOMAIN: &[u8] = b"avap-host compiled artifact v2\0";
const KEY_FILE: &str = "host.key";
/// Artifacts kept at most; the oldest go first beyond it (two per guest and
/// catalog: a directory of a long-lived host stays small).
const MAX_ARTIFACTS: usize = 16;

/// Why the directory cannot be used (the host runs without it).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} may be written by other users or belongs to another one: not used")]
    NotPrivate(String),
}

/// A directory of authenticated compiled modules.
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
    /// The engine's identity ([`super::engine_id`]) and this host's version:
    /// a new release compiles again (its snapshot tool may differ).
    engine_tag: [u8; 32],
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ArtifactCache {
    /// Opens (making it if need be) `dir` for artifacts of `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<ArtifactCache, CacheError> {
        let name = dir.display().to_string();
        let io = |e| CacheError::Io(name.clone(), e);
        create_private_dir(dir).map_err(io)?;
        check_private(dir, &name)?;
        let key = host_key(&dir.join(KEY_FILE)).map_err(io)?;
        let engine_tag =
            Sha256::new().chain_update(super::engine_id(engine)).chain_update(env!("CARGO_PKG_VERSION")).finalize();
        Ok(ArtifactCache { dir: dir.to_path_buf(), key, engine_tag: engine_tag.into() })
    }

    /// The file of the artifact named by `key`: what it was compiled from
    /// (a module's bytes, or what determines a prepared guest).
    fn path(&self, key: &[u8]) -> PathBuf {
        let digest = Sha256::digest(key);
        self.dir.join(format!("{}-{}.cwasm", hex::encode(&digest[..16]), hex::encode(&self.engine_tag[..8])))
    }

    fn mac(&self, key: &[u8], meta: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(DOMAIN);
        mac.update(&Sha256::digest(key));
        mac.update(&self.engine_tag);
        mac.update(&(meta.len() as u64).to_le_bytes());
        mac.update(meta);
        mac.update(payload);
        mac
    }

    /// The module stored under `key`, and the bytes stored with it, if this
    /// host stored them and they verify.
    pub fn load(&self, engine: &Engine, key: &[u8]) -> Option<(Module, Vec<u8>)> {
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (tag, rest) = rest.split_at_checked(32)?;
        let (len, rest) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (meta, payload) = rest.split_at_checked(len)?;
        if self.mac(key, meta, payload).verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "a compiled artifact failed authentication: compiling again");
            return None;
        }
        deserialize(engine, Vouched(payload))
            .inspect_err(|e| tracing::warn!(error = %e, "a compiled artifact did not load: compiling again"))
            .ok()
            .map(|module| (module, meta.to_vec()))
    }

    /// Keeps `module` under `key`, with `meta` (a few bytes the caller
    /// needs back with it), for later starts. Best effort: a failure is
    /// logged and forgotten.
    pub fn store(&self, key: &[u8], module: &Module, meta: &[u8]) {
        let result = (|| -> std::io::Result<()> {
            let payload = module.serialize().map_err(std::io::Error::other)?;
            let meta_len = u32::try_from(meta.len()).map_err(std::io::Error::other)?;
            let tag = self.mac(key, meta, &payload).finalize().into_bytes();
            let path = self.path(key);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let mut file = private_file(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&tag)?;
            file.write_all(&meta_len.to_le_bytes())?;
            file.write_all(meta)?;
            file.write_all(&payload)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            self.trim();
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not keep a compiled artifact");
        }
    }

    /// Removes the oldest artifacts beyond [`MAX_ARTIFACTS`].
    fn trim(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if artifacts.len() <= MAX_ARTIFACTS {
            return;
        }
        artifacts.sort();
        for (_, path) in &artifacts[..artifacts.len() - MAX_ARTIFACTS] {
            let _ = fs::remove_file(path);
        }
    }
}

/// A release's precompiled guest as the definition server ships it: the
/// artifact, and its signature and claim (`Err` when its `interface_json`
/// did not even parse).
#[derive(Debug, Clone)]
pub struct SignedArtifact {
    pub bytes: Arc<[u8]>,
    pub claim: Result<ArtifactClaim, ArtifactError>,
}

/// Takes the compiled module from `artifact` if one of `trusted` signed it
/// as the artifact of `module` (the guest module as published) compiled
/// from `compiled` (what this host compiles for it) on this engine
/// (`engine_id`); else says why not. Every digest in the signed statement
/// is computed here from the bytes at hand, the claim's own are only
/// compared to give the reason.
pub fn open_signed(
    engine: &Engine,
    engine_id: &[u8; 32],
    artifact: &SignedArtifact,
    module: &[u8],
    compiled: &[u8],
    trusted: &[GuestPublicKey],
) -> Result<(Module, String), String> {
    let claim = artifact.claim.as_ref().map_err(ToString::to_string)?;
    let actual = ArtifactStatement {
        artifact: Sha256::digest(&*artifact.bytes).into(),
        module: Sha256::digest(module).into(),
        compiled: Sha256::digest(compiled).into(),
        engine: *engine_id,
    };
    let signed_by = claim.verify(&actual, trusted).map_err(|e| e.to_string())?;
    let module = deserialize(engine, Vouched(&artifact.bytes)).map_err(|e| format!("it did not load: {e}"))?;
    Ok((module, signed_by))
}

/// Bytes vouched for as a module compiled by an engine of these settings:
/// made only by [`ArtifactCache::load`] (this host's MAC verified) and
/// [`open_signed`] (a trusted signature verified).
struct Vouched<'a>(&'a [u8]);

/// Reads a compiled module.
///
/// SAFETY: `Module::deserialize` is `unsafe` because it takes the bytes as
/// machine code without being able to check them. It is sound here because
/// it takes only [`Vouched`] bytes, which this module makes in two places,
/// each after checking where the bytes came from:
/// - [`ArtifactCache::load`]: a valid HMAC under this host's private key
///   over exactly these bytes, the digest of the module they came from and
///   this engine's identity: they are what [`ArtifactCache::store`] wrote
///   from `Module::serialize` of a module this process compiled with an
///   engine of the same settings;
/// - [`open_signed`]: a valid Ed25519 signature, by a key the operator put
///   in `AVAP_GUEST_KEYS`, over the SHA-256 of exactly these bytes, of the
///   module this host compiles and of this engine's identity: the release
///   vouches they are what `avap precompile` wrote from `Module::serialize`
///   of that very module on an engine of the same settings. That makes the
///   release key as powerful as the host's own binary, which is why only
///   the release holds it (README, "Trust and roll-out").
///
/// wasmtime also refuses bytes from another version or settings itself.
/// This is the only `unsafe` in the host.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: Vouched<'_>) -> wasmtime::Result<Module> {
    // SAFETY: see above: authenticated by this host, or signed by a trusted
    // release, for this module and this engine.
    unsafe { Module::deserialize(engine, bytes.0) }
}

/// The host key: read, or made (32 random bytes, 0600) on first use.
fn host_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match fs::read(path) {
        Ok(bytes) => {
            bytes.try_into().map_err(|_| std::io::Error::other(format!("{} is not a 32-byte key", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(std::io::Error::other)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let mut file = private_file(&tmp)?;
            file.write_all(&key)?;
            file.sync_all()?;
            // Another process may have made one meanwhile: the first wins.
            match fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&tmp);
                    host_key(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn check_private(dir: &Path, name: &str) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(dir).map_err(|e| CacheError::Io(name.to_string(), e))?;
    if meta.mode() & 0o022 != 0 || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(CacheError::NotPrivate(name.to_string()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &str) -> Result<(), CacheError> {
    Ok(())
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

    fn fuel_engine(fuel: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(fuel);
        Engine::new(&config).expect("engine")
    }

    fn answer(engine: &Engine, module: &Module) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        store.set_fuel(1000).expect("fuel");
        let instance = wasmtime::Instance::new(&mut store, module, &[]).expect("instance");
        instance.get_typed_func::<(), i32>(&mut store, "answer").expect("func").call(&mut store, ()).expect("call")
    }

    #[test]
    fn what_this_host_stored_comes_back_and_nothing_else_is_taken() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = fuel_engine(true);
        let wasm = wat::parse_str(WAT).expect("wat");
        let cache = ArtifactCache::open(dir.path(), &engine).expect("cache");
        assert!(cache.load(&engine, &wasm).is_none(), "empty at first");
        let module = Module::new(&engine, &wasm).expect("compile");
        cache.store(&wasm, &module, b"meta");
        let (loaded, meta) = cache.load(&engine, &wasm).expect("stored and verified");
        assert_eq!(answer(&engine, &loaded), 42);
        assert_eq!(meta, b"meta");
        // Another cache (another host key) over the same directory's file is refused.
        let path = cache.path(&wasm);
        let other = tempfile::tempdir().expect("dir");
        let foreign = ArtifactCache::open(other.path(), &engine).expect("cache");
        fs::copy(&path, foreign.path(&wasm)).expect("copy");
        assert!(foreign.load(&engine, &wasm).is_none(), "an artifact under another host's key");
        // One byte altered anywhere: refused.
        let good = fs::read(&path).expect("read");
        for at in [3, MAGIC.len() + 5, MAGIC.len() + 33, MAGIC.len() + 37, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).expect("write");
            assert!(cache.load(&engine, &wasm).is_none(), "byte {at} altered");
        }
        // An unsigned artifact (what wasmtime itself would write): refused.
        fs::write(&path, module.serialize().expect("serialize")).expect("write");
        assert!(cache.load(&engine, &wasm).is_none(), "unsigned");
        // Another module's bytes do not find this one's artifact.
        fs::write(&path, &good).expect("restore");
        assert!(cache.load(&engine, b"\0asm\x01\0\0\0").is_none());
        // An engine with other settings (no fuel) gets a different key and file.
        let other_engine = fuel_engine(false);
        let plain = ArtifactCache::open(dir.path(), &other_engine).expect("cache");
        assert!(plain.load(&other_engine, &wasm).is_none(), "a foreign-engine artifact is never read");
        assert_ne!(plain.path(&wasm), cache.path(&wasm));
        // The key persists: a second open of the directory reads the artifact.
        let again = ArtifactCache::open(dir.path(), &engine).expect("cache");
        assert!(again.load(&engine, &wasm).is_some());
    }

    /// What `avap precompile` does, for `compiled` on `engine`, signed by
    /// `key`: the artifact and its claim for the host.
    fn precompiled(
        engine: &Engine,
        compiled: &[u8],
        module: &[u8],
        claimed_engine: [u8; 32],
        key: &avap_wire::guest_sig::GuestSigningKey,
    ) -> SignedArtifact {
        let bytes = engine.precompile_module(compiled).expect("precompile");
        let statement = ArtifactStatement {
            artifact: Sha256::digest(&bytes).into(),
            module: Sha256::digest(module).into(),
            compiled: Sha256::digest(compiled).into(),
            engine: claimed_engine,
        };
        SignedArtifact { bytes: bytes.into(), claim: Ok(key.sign_artifact(&statement).claim()) }
    }

    #[test]
    fn a_signed_artifact_is_taken_only_for_this_module_and_this_engine() {
        use avap_wire::guest_sig::GuestSigningKey;
        let engine = fuel_engine(true);
        let id = super::super::engine_id(&engine);
        let compiled = wat::parse_str(WAT).expect("wat");
        let module = b"the module as published";
        let release = GuestSigningKey::generate().expect("key");
        let trusted = [release.public()];
        let open = |artifact: &SignedArtifact, module: &[u8], compiled: &[u8], trusted: &[GuestPublicKey]| {
            open_signed(&engine, &id, artifact, module, compiled, trusted).map(|(m, _)| m)
        };

        let good = precompiled(&engine, &compiled, module, id, &release);
        let (loaded, signed_by) = open_signed(&engine, &id, &good, module, &compiled, &trusted).expect("taken");
        assert_eq!(answer(&engine, &loaded), 42);
        assert_eq!(signed_by, release.public().id());

        let refused = |result: Result<Module, String>, what: &str, says: &str| match result {
            Ok(_) => panic!("{what}: taken"),
            Err(why) => assert!(why.contains(says), "{what}: {why}"),
        };
        let stranger = GuestSigningKey::generate().expect("key");
        refused(open(&good, module, &compiled, &[stranger.public()]), "an untrusted key", "does not trust");
        let wrongly_signed = precompiled(&engine, &compiled, module, id, &stranger);
        refused(open(&wrongly_signed, module, &compiled, &trusted), "signed by a stranger", "does not trust");
        let mut unsigned = good.clone();
        unsigned.claim = unsigned.claim.map(|c| ArtifactClaim { signature: None, ..c });
        refused(open(&unsigned, module, &compiled, &trusted), "unsigned", "not signed");
        for at in [0, good.bytes.len() / 2, good.bytes.len() - 1] {
            let mut bytes = good.bytes.to_vec();
            bytes[at] ^= 0x01;
            let altered = SignedArtifact { bytes: bytes.into(), claim: good.claim.clone() };
            refused(open(&altered, module, &compiled, &trusted), "altered", "does not verify");
        }
        refused(open(&good, b"another module", &compiled, &trusted), "another module's", "is of module");
        let other_form = wat::parse_str(r#"(module (func (export "answer") (result i32) i32.const 41))"#).expect("wat");
        refused(open(&good, module, &other_form, &trusted), "another compiled form", "compiled from");
        let malformed = SignedArtifact {
            bytes: good.bytes.clone(),
            claim: ArtifactClaim::from_interface_json("{\"signature\": 1}"),
        };
        refused(open(&malformed, module, &compiled, &trusted), "malformed", "malformed");

        // Compiled for another engine (no fuel), and said so: refused
        // without reading it.
        let foreign = fuel_engine(false);
        let foreign_id = super::super::engine_id(&foreign);
        assert_ne!(foreign_id, id, "fuel is part of the engine's identity");
        let honest = precompiled(&foreign, &compiled, module, foreign_id, &release);
        refused(open(&honest, module, &compiled, &trusted), "another engine's", &hex::encode(foreign_id));
        // A release that signs another engine's code as this engine's:
        // wasmtime's own check refuses it.
        let lying = precompiled(&foreign, &compiled, module, id, &release);
        refused(open(&lying, module, &compiled, &trusted), "another engine's, claimed as this one's", "did not load");
    }

    #[test]
    fn the_engine_identity_is_the_settings_not_the_limits() {
        use super::super::{Limits, SandboxEngine};
        let small = SandboxEngine::new(&Limits { max_concurrency: 1, max_memory_bytes: 16 << 20, ..Limits::default() });
        let large = SandboxEngine::new(&Limits { max_concurrency: 64, ..Limits::default() });
        let (small, large) = (small.expect("engine"), large.expect("engine"));
        assert_eq!(small.id(), large.id(), "the pool's sizes do not change compiled code");
        assert_eq!(small.id(), super::super::engine_id(small.engine()), "computed once, the same");
        assert_ne!(small.id(), super::super::engine_id(&fuel_engine(true)), "other settings, another identity");
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).expect("mkdir");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = ArtifactCache::open(&shared, &fuel_engine(true)).expect_err("not private");
        assert!(matches!(err, CacheError::NotPrivate(_)), "{err}");
        let made = dir.path().join("made");
        ArtifactCache::open(&made, &fuel_engine(true)).expect("made private");
        let mode = fs::metadata(&made).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let key_mode = fs::metadata(made.join(KEY_FILE)).expect("key").permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
    }
}
