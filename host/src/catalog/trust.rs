//! Who may change what this host runs: the keys it verifies with, whether
//! catalogs must carry a signed manifest, the guest keys it trusts, the
//! caps on what the definition server may send, and this host's place in a
//! staged roll-out. Built once from the configuration; [`Trust::summary`] is
//! what `/health` shows of it.
//!
//! Three modes (README "Roll-out"):
//! - **production** (the default): no published default key is accepted at
//!   start-up, entries are verified under the catalog-entry key, every
//!   catalog must carry a signed manifest, guest modules must be signed by
//!   one of `AVAP_GUEST_KEYS`, and the definition server is reached over
//!   TLS (plaintext only with `AVAP_BRAIN_PLAINTEXT`);
//! - **dev** (`--dev`): the same checks, but the published default keys,
//!   the published development guest key and plaintext are allowed, and
//!   only toward a definition server on this machine (`BRAIN_HOST` a
//!   loopback address or `localhost`): a dev host with no `BRAIN_HOST`
//!   follows none, and one that names another machine is held to the
//!   production rules for it;
//! - **original-servers** (`--original-servers`): the original AVAP
//!   servers' scheme: entries signed with the shared secret itself, no
//!   manifest required (one is still checked when present), the default
//!   keys allowed, guest modules still need a trusted signature.

use avap_wire::guest_sig::{GuestPublicKey, dev_signing_key};
use avap_wire::keys::{KeyScheme, Keys, MIN_API_KEY_BYTES, MIN_SECRET_BYTES, WeakKey, weak_key};
use avap_wire::manifest::rollout_bucket;
use serde_json::{Value, json};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustMode {
    Production,
    Dev,
    OriginalServers,
}

/// Why the host refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "{0} is the published default: anyone could sign what this host runs. Set your own, or pass --dev \
         (development) or --original-servers (talking to the original AVAP servers, which hard-code it)"
    )]
    DefaultKey(&'static str),
    #[error(
        "the definition server would be reached in plaintext ({0}): set BRAIN_TLS_CA to verify its certificate, \
         or pass --brain-plaintext (or --dev / --original-servers)"
    )]
    Plaintext(String),
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--dev and --original-servers do not go together")]
    TwoModes,
    #[error("{name} is {len} bytes: at least {min} are needed outside --dev / --original-servers")]
    ShortKey { name: &'static str, len: usize, min: usize },
    #[error(
        "AVAP_GUEST_KEYS holds the published development key, which anyone can sign with; it is trusted only with --dev, \
         toward a definition server on this machine"
    )]
    DevGuestKey,
    #[error(
        "--dev trusts the published keys only toward a definition server on this machine, and BRAIN_HOST={0} is \
         not one: {1} is the published default. Set your own (and AVAP_GUEST_KEYS, BRAIN_TLS_CA) to follow that \
         server, or leave BRAIN_HOST unset (standalone) or point it at 127.0.0.1"
    )]
    DevRemoteBrain(String, &'static str),
    #[error("BRAIN_TLS_CLIENT_CERT is set but BRAIN_TLS_CA is not: mutual TLS needs TLS")]
    ClientCertWithoutTls,
}

/// Caps on what the definition server may send.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrainCaps {
    /// Largest gRPC message decoded (a whole catalog).
    pub max_message_bytes: usize,
    pub max_entries: usize,
    /// Largest guest module (a wasm binary; WAT text is refused).
    pub max_module_bytes: usize,
    /// A watch stream silent this long is stale and reconnected.
    pub idle_timeout_ms: u64,
}

pub struct Trust {
    pub mode: TrustMode,
    pub keys: Keys,
    /// Keys whose signature a guest module must carry.
    pub guest_keys: Vec<GuestPublicKey>,
    /// Whether a catalog without a signed manifest is refused.
    pub require_manifest: bool,
    pub host_id: String,
    /// This host's roll-out bucket (0..100).
    pub bucket: u8,
    pub caps: BrainCaps,
    /// Semantic-version downgrade guard for catalogs without a manifest.
    pub allow_guest_downgrade: bool,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").field("mode", &self.mode).field("guest_keys", &self.guest_keys).finish_non_exhaustive()
    }
}

/// This machine's name, for the roll-out bucket: `HOSTNAME`, else
/// `/etc/hostname`, else a fixed name.
fn machine_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "avap-host".into())
}

impl Trust {
    /// The trust settings `config` asks for; refuses published default keys
    /// and plaintext unless a flag allows them (and logs loudly when one does).
    pub fn from_config(config: &Config) -> Result<Trust, TrustError> {
        if config.dev && config.original_servers {
            return Err(TrustError::TwoModes);
        }
        let mode = if config.dev {
            TrustMode::Dev
        } else if config.original_servers {
            TrustMode::OriginalServers
        } else {
            TrustMode::Production
        };
        let relaxed = mode != TrustMode::Production;
        let standalone = config.is_standalone();
        // --dev relaxes the rules only toward this machine: a brain
        // elsewhere gets none of the published keys' trust.
        let remote_dev = mode == TrustMode::Dev && !standalone && !config.brain_is_loopback();
        let mut keys =
            vec![("AVAP_INTERNAL_KEY", &config.internal_key, avap_wire::auth::DEFAULT_INTERNAL_KEY, MIN_SECRET_BYTES)];
        if !standalone {
            keys.push(("API_KEY", &config.api_key, avap_wire::auth::DEFAULT_API_KEY, MIN_API_KEY_BYTES));
        }
        for (name, value, published, min) in keys {
            match weak_key(value, published, min) {
                Some(WeakKey::Published) if remote_dev => {
                    return Err(TrustError::DevRemoteBrain(config.brain_host().to_string(), name));
                }
                Some(WeakKey::Published) if relaxed => tracing::warn!(
                    "!!! {name} is the published default: anyone can sign what this host accepts; allowed only by --dev / --original-servers !!!"
                ),
                Some(WeakKey::Published) => return Err(TrustError::DefaultKey(name)),
                Some(WeakKey::Short { len, min }) if !relaxed => return Err(TrustError::ShortKey { name, len, min }),
                _ => {}
            }
        }
        if config.brain_client_cert.is_some() && config.brain_tls_ca.is_none() {
            return Err(TrustError::ClientCertWithoutTls);
        }
        if !standalone && config.brain_tls_ca.is_none() {
            if !((relaxed && !remote_dev) || config.brain_plaintext) {
                return Err(TrustError::Plaintext(config.brain_url()));
            }
            tracing::warn!(url = %config.brain_url(), "the definition server is reached in plaintext: its identity is not checked and API_KEY travels in the clear");
        }
        match mode {
            TrustMode::Dev if standalone => tracing::warn!(
                "--dev: development mode, standalone (no BRAIN_HOST: no definition server is contacted; the published package key is allowed); never for a deployment"
            ),
            TrustMode::Dev if remote_dev => tracing::warn!(
                brain = %config.brain_host(),
                "--dev: development mode toward a definition server on another machine: its catalogs are held to the production rules (your own keys, AVAP_GUEST_KEYS)"
            ),
            TrustMode::Dev => tracing::warn!(
                "--dev: development mode (published keys allowed, the published development guest key trusted, plaintext allowed toward this machine's definition server); never for a deployment"
            ),
            TrustMode::OriginalServers => tracing::warn!(
                "!!! --original-servers: catalog entries are verified with the shared secret itself and catalogs without a signed manifest are accepted, as the original AVAP servers need !!!"
            ),
            TrustMode::Production => {}
        }
        let scheme = if mode == TrustMode::OriginalServers { KeyScheme::Original } else { KeyScheme::Separated };
        let mut guest_keys = config.guest_keys.0.clone();
        let dev_key = dev_signing_key().public();
        if mode == TrustMode::Dev && !remote_dev {
            guest_keys.push(dev_key);
        } else if guest_keys.contains(&dev_key) {
            return Err(TrustError::DevGuestKey);
        }
        if guest_keys.is_empty() && !standalone {
            tracing::warn!(
                "AVAP_GUEST_KEYS is empty: a catalog that carries a guest module is refused whole; give the release's public key"
            );
        }
        let host_id = config.host_id.clone().unwrap_or_else(machine_name);
        Ok(Trust {
            mode,
            keys: Keys::new(config.internal_key.as_bytes(), scheme),
            guest_keys,
            require_manifest: mode != TrustMode::OriginalServers,
            bucket: rollout_bucket(&host_id),
            host_id,
            caps: BrainCaps {
                max_message_bytes: config.brain_max_message_bytes,
                max_entries: config.max_catalog_entries,
                max_module_bytes: config.max_guest_module_bytes,
                idle_timeout_ms: config.brain_idle_timeout_ms,
            },
            allow_guest_downgrade: config.allow_guest_downgrade,
        })
    }

    /// What `/health` shows.
    pub fn summary(&self) -> Value {
        json!({
            "mode": self.mode,
            "catalog": if self.require_manifest { "signed-manifest" } else { "compat-no-manifest" },
            "guest_keys": self.guest_keys.iter().map(GuestPublicKey::id).collect::<Vec<_>>(),
            "host_id": self.host_id,
            "rollout_bucket": self.bucket,
            "brain_caps": self.caps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(f: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::defaults();
        f(&mut c);
        Trust::from_config(&c).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_published_keys_and_plaintext_need_a_flag() {
        assert!(refused(|_| {}).contains("AVAP_INTERNAL_KEY is the published default"), "the defaults do not start");
        let secret = "a secret of at least thirty-two bytes";
        assert!(refused(|c| c.internal_key = secret.into()).contains("API_KEY is the published default"));
        assert!(refused(|c| c.internal_key = "short".into()).contains("AVAP_INTERNAL_KEY is 5 bytes"));
        let own = |c: &mut Config| {
            c.internal_key = secret.into();
            c.api_key = "a token of sixteen bytes".into();
        };
        assert!(refused(own).contains("plaintext"), "no BRAIN_TLS_CA: plaintext needs a flag");
        let plaintext = |c: &mut Config| {
            own(c);
            c.brain_plaintext = true;
        };
        assert_eq!(refused(plaintext), "");
        assert_eq!(
            refused(|c| {
                own(c);
                c.brain_tls_ca = Some("/etc/ssl/brain-ca.pem".into());
            }),
            ""
        );
        assert!(
            refused(|c| {
                plaintext(c);
                c.guest_keys = vec![dev_signing_key().public()].into();
            })
            .contains("published development key")
        );
        assert!(
            refused(|c| {
                plaintext(c);
                c.brain_client_cert = Some("client.pem".into());
                c.brain_client_key = Some("client.key".into());
            })
            .contains("mutual TLS needs TLS")
        );
        // Standalone: no brain, so no API_KEY or link to protect; the package key still.
        assert_eq!(
            refused(|c| {
                c.internal_key = secret.into();
                c.standalone = true;
            }),
            ""
        );
        for flag in [|c: &mut Config| c.dev = true, |c: &mut Config| c.original_servers = true] {
            assert_eq!(refused(flag), "", "a flag allows the defaults");
        }
        assert!(
            refused(|c| {
                c.dev = true;
                c.original_servers = true;
            })
            .contains("do not go together")
        );
    }

    /// The README's first command (`--dev`, no brain named) follows no
    /// definition server; a dev host trusts the published keys only toward
    /// one on this machine.
    #[test]
    fn dev_trusts_the_published_keys_only_toward_this_machine() {
        let parse = |args: &[&str]| {
            let mut c = Config::defaults();
            c.dev = true;
            c.brain_host = args.first().map(|h| h.to_string());
            c
        };
        let alone = parse(&[]);
        assert!(alone.is_standalone(), "--dev with no BRAIN_HOST is standalone");
        assert!(!Config::defaults().is_standalone(), "outside --dev the default brain is followed");
        assert_eq!(Config::defaults().brain_url(), "http://avap-definition-engine:50051");
        for local in ["127.0.0.1", "localhost", "::1", "[::1]", "127.3.2.1"] {
            let c = parse(&[local]);
            assert!(!c.is_standalone() && c.brain_is_loopback(), "{local}");
            let trust = Trust::from_config(&c).unwrap_or_else(|e| panic!("{local}: {e}"));
            assert_eq!(trust.guest_keys, [dev_signing_key().public()], "{local}");
        }
        assert_eq!(parse(&["localhost"]).brain_url(), "http://127.0.0.1:50051", "localhost is not looked up");
        for remote in ["avap-definition-engine", "brain.example", "10.0.0.5", "192.168.1.20", "::ffff:10.0.0.5"] {
            let c = parse(&[remote]);
            assert!(!c.brain_is_loopback(), "{remote}");
            let err = Trust::from_config(&c).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("only toward a definition server on this machine"), "{remote}: {err}");
            // With keys of its own, the remote brain is held to production
            // rules: no published guest key, no plaintext without the flag.
            let mut own = c.clone();
            own.internal_key = "a secret of at least thirty-two bytes".into();
            own.api_key = "a token of sixteen bytes".into();
            let err = Trust::from_config(&own).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("plaintext"), "{remote}: {err}");
            own.brain_plaintext = true;
            let trust = Trust::from_config(&own).expect("own keys, plaintext by flag");
            assert!(trust.guest_keys.is_empty(), "{remote}: the development guest key is not trusted");
            own.guest_keys = vec![dev_signing_key().public()].into();
            assert!(Trust::from_config(&own).is_err(), "{remote}: nor may it be named");
        }
    }

    #[test]
    fn dev_trusts_the_development_guest_key_and_the_other_modes_only_their_own() {
        let mut c = Config::defaults();
        c.dev = true;
        let dev = Trust::from_config(&c).expect("dev");
        assert_eq!(dev.guest_keys, [dev_signing_key().public()]);
        assert!(dev.require_manifest);
        c.dev = false;
        c.original_servers = true;
        let original = Trust::from_config(&c).expect("original servers");
        assert!(original.guest_keys.is_empty() && !original.require_manifest);
        assert_eq!(original.keys.scheme(), KeyScheme::Original);
        c.host_id = Some("host-a".into());
        assert_eq!(Trust::from_config(&c).expect("trust").bucket, rollout_bucket("host-a"));
    }
}
