//! The host's own compiled guests, kept on disk so that a restart does not
//! compile again: Cranelift takes about half a second for the guest and as
//! much again for each prepared snapshot, and a start waits for both.
//!
//! `wasmtime::Module::deserialize` trusts its input completely (it maps the
//! bytes as machine code), so the one rule here is: **nothing is
//! deserialized that this host did not produce**. Every artifact is
//! authenticated with HMAC-SHA256 under a key of this host's own (32 random
//! bytes, made on first use, in `host.key` beside the artifacts); the MAC
//! covers the digest of the module it was compiled from and the engine's
//! compatibility hash as well as the bytes, so an artifact is taken only
//! for the same module and the same engine settings. wasmtime checks its
//! own version and settings again when it reads one. Anything that does
//! not verify is ignored (and compiled again), never an error.
//!
//! The directory is made private to this user (0700, files 0600), and a
//! directory that others may write or that belongs to another user is not
//! used at all: whoever can write there could only replace what this user
//! could replace anyway.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// What an artifact file starts with; the version is in it.
const MAGIC: &[u8; 8] = b"AVAPART1";
/// The MAC's domain, so the host key signs nothing else by accident.
const DOMAIN: &[u8] = b"avap-host compiled artifact v1\0";
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
    /// The engine's compatibility hash, folded to 64 bits.
    engine_hash: u64,
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
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(ArtifactCache { dir: dir.to_path_buf(), key, engine_hash: hasher.finish() })
    }

    /// The file of the artifact named by `key`: what it was compiled from
    /// (a module's bytes, or what determines a prepared guest).
    fn path(&self, key: &[u8]) -> PathBuf {
        let digest = Sha256::digest(key);
        self.dir.join(format!("{}-{:016x}.cwasm", hex::encode(&digest[..16]), self.engine_hash))
    }

    fn mac(&self, key: &[u8], meta: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(DOMAIN);
        mac.update(&Sha256::digest(key));
        mac.update(&self.engine_hash.to_le_bytes());
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
        deserialize(engine, payload)
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

/// Reads a compiled module.
///
/// SAFETY: `Module::deserialize` is `unsafe` because it takes the bytes as
/// machine code without being able to check them. It is sound here because
/// its only caller, [`ArtifactCache::load`], passes bytes that carry a valid
/// HMAC under this host's private key over exactly these bytes, the digest
/// of the module they came from and this engine's compatibility hash: they
/// are what [`ArtifactCache::store`] wrote from `Module::serialize` of a
/// module this process compiled with an engine of the same settings.
/// wasmtime also refuses bytes from another version or settings itself.
/// This is the only `unsafe` in the host.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: see above: authenticated, produced by this host for this engine.
    unsafe { Module::deserialize(engine, payload) }
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
