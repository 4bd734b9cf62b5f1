//! How a catalog and a guest module become live: verify the update, vet a
//! new guest (its compiled code from the release's signed precompiled
//! artifact, or compiled off the request path; ABI checks, probe, no
//! downgrade, self-test), prepare the guest with the catalog (a snapshot,
//! self-tested), then swap the whole [`Live`] at once. All or nothing: a
//! refused update leaves what was live, and says why in the log, `/health`
//! and `/metrics`.
//!
//! Preparing is two steps: taking the snapshot (the guest runs
//! `avap_prepare` with the catalog: milliseconds, and every problem of the
//! catalog is known then) and compiling it (about half a second, which no
//! precompiled artifact can save: the snapshot holds the catalog, and the
//! definition server must not be able to ship code). A **new guest** with a
//! catalog of at most [`EARLY_CATALOG_BYTES`] is swapped in as soon as its
//! snapshot is taken and it passed a self-test with the catalog in its
//! input: it serves unprepared (the catalog in each input, as a guest that
//! cannot be prepared does) while its snapshot compiles in the background,
//! and the prepared guest replaces it when ready, if guest and catalog are
//! still the live ones. Probation counts the executions of both (they are
//! the same module). If the snapshot then fails to compile or to pass its
//! self-test, the guest goes on unprepared and the log says why. A
//! catalog-only update, or a larger catalog, is swapped in prepared, as
//! before.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use avap_abi::Mode;
use avap_policy::json::{GuestOutput, decode_output};

use crate::catalog::{self, CatalogError, LiveCatalog, VerifiedGuest};
use crate::metrics::SyncResult;
use crate::runtime::abi::GuestInput;
use crate::runtime::artifacts::SignedArtifact;
use crate::runtime::{ArtifactOffer, Guest, Limits, Preparation, SandboxEngine, Snapshot};
use crate::state::{AppState, Live, update, write};

/// The script every candidate guest must run, and what it must answer.
const SELF_TEST_SCRIPT: &str = "addVar(a, 1)\nb = a + 41\naddResult(b)";

/// What applying a catalog did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Same version hash as the live catalog: nothing to do.
    Unchanged,
    /// New catalog live; `Some(version)` when the guest was swapped too.
    Updated { guest_swapped_to: Option<String> },
}

impl AppState {
    /// Vets a catalog from the definition server and, if every step passes,
    /// makes it (and its guest module, if new) live: the guest runs
    /// `avap_prepare` with the catalog before anything is swapped, and is
    /// swapped in prepared, or, a new guest with a small catalog,
    /// unprepared until its snapshot is compiled (module docs). All or
    /// nothing, off the request path.
    pub async fn apply_catalog(
        self: &Arc<Self>,
        response: avap_wire::pb::CatalogResponse,
    ) -> Result<Applied, CatalogError> {
        let _one_at_a_time = self.apply_lock.lock().await;
        // MACs and hashes over up to the whole message: off the async workers.
        let trust = self.trust.clone();
        let verified = tokio::task::spawn_blocking(move || catalog::verify(&response, &trust))
            .await
            .map_err(|e| CatalogError::Internal(format!("verification task failed: {e}")))??;
        let live = self.live();
        // The highest serial ever taken, not the live one: a canary's
        // revert never lowers what a replay is checked against.
        let high = self.high_serial.load(Ordering::Acquire);
        match verified.serial {
            Some(serial) if serial < high => return Err(CatalogError::Replay { serial, live: high }),
            // One serial, one manifest: the live one's, byte for byte.
            Some(serial) if serial == high && live.catalog.manifest_hash != verified.manifest_hash => {
                return Err(CatalogError::SameSerial { serial });
            }
            Some(serial) if serial > max_serial() => return Err(CatalogError::FutureSerial { serial }),
            None if high > 0 => return Err(CatalogError::ManifestDropped),
            _ => {}
        }
        let (new_module, hold) = match verified.guest.as_ref() {
            Some(g) if g.digest != live.guest.info().digest => self.rollout_decision(g),
            _ => (None, None),
        };
        let artifact = verified.guest.as_ref().and_then(|g| g.artifact.clone());
        // "Changed" is decided by the entries themselves (the version hash
        // the host recomputed, and what their interfaces allow), never by
        // the `version_hash` the server sent: an original server sends a
        // new one on every call.
        let same_entries = live.catalog.source == catalog::CatalogSource::Brain
            && live.catalog.version_hash.as_deref() == Some(verified.version_hash.as_str())
            && live.catalog.interface_mismatches == verified.interface_mismatches;
        if same_entries && new_module.is_none() {
            // Same entries (under a newer serial, if the brain restarted or
            // only the roll-out changed): record the serial and the time of
            // this sync, keep the rest.
            let catalog = Arc::new(LiveCatalog {
                serial: verified.serial,
                manifest_hash: verified.manifest_hash.clone(),
                expires_at: verified.expires_at,
                synced_at: Some(SystemTime::now()),
                ..LiveCatalog::clone(&live.catalog)
            });
            if verified.serial != live.catalog.serial {
                self.metrics.catalog_serial(catalog.serial);
                self.take_serial(verified.serial);
            }
            // Only the catalog's bookkeeping changes: the guest and runner
            // stay whatever is live now (a canary revert may have swapped
            // them since `live` was read; it does not wait for this lock).
            update(&self.live, |now| Arc::new(Live { guest: now.guest.clone(), catalog, runner: now.runner.clone() }));
            self.taken(hold);
            return Ok(Applied::Unchanged);
        }
        let signed_by = verified.guest.as_ref().map(|g| g.signed_by.clone());
        let pinned_version = verified.guest.as_ref().and_then(|g| g.pin.as_ref()).map(|p| p.version.clone());
        let candidate = match new_module {
            Some(module) => {
                let guest = self.vet_guest(&module, artifact, verified.serial.is_some()).await?;
                if let Some(want) = pinned_version.filter(|v| !v.is_empty())
                    && want != guest.info().version
                {
                    return Err(CatalogError::Guest(format!(
                        "the manifest pins version {want}, the module reports {}",
                        guest.info().version
                    )));
                }
                Some(Arc::new(guest))
            }
            None => None,
        };
        let guest = candidate.clone().unwrap_or_else(|| live.guest.clone());
        let guest_json = verified.guest_json();
        let avap = verified.avap.clone();
        let serial = verified.serial;
        let catalog = Arc::new(verified.into_live(guest_json));
        let preparation = begin_runner(&self.engine, &self.limits, &guest, &catalog).await?;
        if let Some((name, reason)) = catalog_errors(&preparation).first().cloned() {
            return Err(CatalogError::Invalid { name, reason });
        }
        if preparation.is_none() {
            // A guest that cannot be prepared checks each command on its own.
            for (name, source) in &avap {
                self.check_avap_command(&guest, name, source).await?;
            }
        }
        let early = candidate.is_some()
            && matches!(preparation, Some(Preparation::Snapshot(_)))
            && catalog.guest_json.as_deref().map_or(0, |c| c.get().len()) <= EARLY_CATALOG_BYTES;
        let (runner, pending) = match preparation {
            Some(Preparation::Snapshot(snapshot)) if early => {
                self.self_test_with_catalog(&guest, &catalog).await?;
                (guest.clone(), Some(snapshot))
            }
            begun => (finish_runner(&self.engine, &self.limits, &guest, begun).await?, None),
        };
        // Everything passed: from here on, nothing can refuse the update.
        let swapped_to = candidate.as_ref().map(|g| g.info().version.clone());
        if let Some(guest) = &candidate {
            tracing::info!(
                version = %guest.info().version,
                digest = %guest.info().digest,
                signed_by = ?signed_by,
                precompiled = guest.info().precompiled,
                load_ms = guest.info().load_ms,
                prepared = pending.is_none(),
                "guest module swapped in"
            );
            self.metrics.guest_swap();
            // What was live until now is the fallback, read under the lock
            // (a canary revert may have changed it since the start).
            self.canary.watch(guest.info().digest.clone(), self.live().guest.clone());
        }
        for m in &catalog.interface_mismatches {
            tracing::warn!(
                entry = %m.name,
                differs = %m.reason,
                "catalog entry names a built-in command with another interface: that command is not supported \
                 with this catalog (the rest applies)"
            );
        }
        tracing::info!(
            version_hash = ?catalog.version_hash,
            entries = catalog.entries,
            snapshot = ?runner.info().snapshot,
            "catalog applied"
        );
        self.taken(hold);
        self.take_serial(serial);
        self.metrics.guest_info(runner.info());
        self.metrics.catalog_serial(catalog.serial);
        self.metrics.catalog_info(&catalog);
        write(&self.live, Arc::new(Live { guest: guest.clone(), catalog: catalog.clone(), runner }));
        if let Some(snapshot) = pending {
            let state = self.clone();
            tokio::spawn(async move { state.finish_in_background(guest, catalog, snapshot).await });
        }
        Ok(Applied::Updated { guest_swapped_to: swapped_to })
    }

    /// Compiles the snapshot of a guest swapped in unprepared, self-tests
    /// it, and makes it the runner if `guest` and `catalog` are still live
    /// (one catalog application at a time: after the one that spawned this).
    async fn finish_in_background(self: Arc<Self>, guest: Arc<Guest>, catalog: Arc<LiveCatalog>, snapshot: Snapshot) {
        let _one_at_a_time = self.apply_lock.lock().await;
        let still_live = |live: &Live| {
            Arc::ptr_eq(&live.guest, &guest)
                && !live.runner.is_prepared()
                && live.catalog.guest_json.as_deref().map(RawValue::get)
                    == catalog.guest_json.as_deref().map(RawValue::get)
        };
        if !still_live(&self.live()) {
            tracing::debug!("a newer catalog or guest is live: its snapshot is not compiled");
            return;
        }
        let prepared = match finish_runner(&self.engine, &self.limits, &guest, Some(Preparation::Snapshot(snapshot)))
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    version = %guest.info().version,
                    "the new guest's snapshot could not be made: it goes on serving unprepared (the catalog in each input)"
                );
                return;
            }
        };
        let mut swapped = false;
        update(&self.live, |now| {
            if !still_live(now) {
                return now.clone();
            }
            swapped = true;
            Arc::new(Live { guest: now.guest.clone(), catalog: now.catalog.clone(), runner: prepared.clone() })
        });
        if swapped {
            self.metrics.guest_info(prepared.info());
            tracing::info!(
                version = %guest.info().version,
                snapshot = ?prepared.info().snapshot,
                "the new guest's snapshot is ready: executions start prepared"
            );
        }
    }

    /// Runs a trivial check of `guest` with `catalog` in its input, as
    /// every execution of an unprepared guest carries it.
    async fn self_test_with_catalog(&self, guest: &Guest, catalog: &LiveCatalog) -> Result<(), CatalogError> {
        let refuse = |reason: String| CatalogError::Guest(reason);
        let mut input = GuestInput::bare("b = 1 + 41", Some(Mode::Check), self.limits.guest());
        input.catalog = catalog.guest_json.as_deref();
        let execution =
            self.run_guest(guest, &input).await.map_err(|e| refuse(format!("self-test with the catalog: {e}")))?;
        let output =
            decode_output(&execution.output).map_err(|e| refuse(format!("self-test with the catalog: output: {e}")))?;
        if !output.ok {
            return Err(refuse(format!("the self-test with the catalog failed: {:?}", output.error)));
        }
        Ok(())
    }

    /// A catalog was taken (applied, or the live one confirmed): a refusal
    /// of an earlier one is history now, kept in `refusals` and the
    /// metrics, no longer shown as the last refusal.
    fn taken(&self, hold: Option<String>) {
        let mut cleared = None;
        self.update_sync(|s| {
            s.guest_hold = hold;
            cleared = s.last_refusal.take();
            s.last_refusal_at = None;
        });
        if let Some(refusal) = cleared {
            tracing::info!(earlier = %refusal, "a catalog was taken after a refusal; the refusal is cleared from /health");
        }
    }

    fn take_serial(&self, serial: Option<u64>) {
        if let Some(serial) = serial {
            self.high_serial.fetch_max(serial, Ordering::AcqRel);
        }
    }

    /// Whether this host takes `guest` now, and if not, why (for
    /// `/health`): a guest that failed its canary here is never taken
    /// again; a manifest's staged roll-out names the share of hosts (by
    /// roll-out bucket) that take it first, and the others keep theirs.
    fn rollout_decision(&self, guest: &VerifiedGuest) -> (Option<Vec<u8>>, Option<String>) {
        let digest = &guest.digest;
        if self.canary.refused(digest) {
            return (None, Some(format!("guest {digest} failed its canary on this host; keeping the previous guest")));
        }
        let percent = guest.pin.as_ref().map_or(100, |p| p.rollout_percent);
        if self.trust.bucket < percent {
            return (Some(guest.module.clone()), None);
        }
        tracing::info!(%digest, percent, bucket = self.trust.bucket, "staged roll-out: not taking the new guest yet");
        let hold = format!(
            "guest {digest} is rolling out to {percent}% of hosts; this host (bucket {}) keeps its guest until the roll-out reaches it",
            self.trust.bucket
        );
        (None, Some(hold))
    }

    /// Counts one execution of guest `digest` for a new guest's probation
    /// ([`crate::catalog::canary`]). If it tripped: at once, the previous
    /// guest serves the live catalog (unprepared: the catalog travels in
    /// each input); then, under the apply lock (after any update in
    /// flight), the previous guest prepared with whatever catalog is live.
    pub fn record_execution(self: &Arc<Self>, digest: &str, fault: bool) {
        let Some(tripped) = self.canary.record(digest, fault) else { return };
        let err = CatalogError::Canary { digest: tripped.digest.clone(), faults: tripped.faults, runs: tripped.runs };
        let fallback = tripped.fallback;
        let live = self.live();
        write(
            &self.live,
            Arc::new(Live { guest: fallback.clone(), catalog: live.catalog.clone(), runner: fallback.clone() }),
        );
        self.metrics.guest_info(fallback.info());
        self.record_refusal(&err);
        let state = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = state.apply_lock.lock().await;
            let live = state.live();
            let prepared = match prepare_runner(&state.engine, &state.limits, &fallback, &live.catalog).await {
                Ok(p) => p.guest,
                Err(e) => {
                    tracing::warn!(error = %e, "the previous guest could not be prepared again; it runs unprepared");
                    fallback.clone()
                }
            };
            state.update_sync(|s| {
                s.guest_hold =
                    Some(format!("guest {} failed its canary on this host; keeping the previous guest", tripped.digest))
            });
            state.metrics.guest_info(prepared.info());
            write(&state.live, Arc::new(Live { guest: fallback, catalog: live.catalog.clone(), runner: prepared }));
        });
    }

    /// Records a refused update where operators look: the log, `/health`
    /// and `/metrics`.
    /// The same refusal again (a server that keeps sending the catalog it
    /// was refused) is logged at debug: it is counted all the same.
    pub fn record_refusal(&self, err: &CatalogError) {
        let text = err.to_string();
        let mut again = false;
        self.update_sync(|s| {
            again = s.last_refusal.as_deref() == Some(text.as_str());
            s.refusals += 1;
            s.last_refusal = Some(text.clone());
            s.last_refusal_at = Some(SystemTime::now());
        });
        if again {
            tracing::debug!(error = %err, reason = err.reason(), "catalog update refused again");
        } else {
            tracing::error!(error = %err, reason = err.reason(), "catalog update refused; the previous catalog stays live");
        }
        self.metrics.catalog_sync(SyncResult::Refused);
        self.metrics.catalog_refusal(err.reason());
    }

    /// Every step a candidate guest must pass before it serves: its compiled
    /// code from the release's precompiled artifact if that verifies, else
    /// compiled off the request path; import and ABI checks, probe, no
    /// downgrade, and a self-test execution.
    /// Without a manifest (`ordered: false`, the original servers) a guest
    /// older than the live one is refused unless downgrades are allowed;
    /// with one, the manifest's serial orders catalogs and a roll-back is
    /// the brain's signed act.
    async fn vet_guest(
        &self,
        module: &[u8],
        artifact: Option<SignedArtifact>,
        ordered: bool,
    ) -> Result<Guest, CatalogError> {
        let refuse = |reason: String| CatalogError::Guest(reason);
        let offer = artifact.map(|artifact| ArtifactOffer { artifact, trusted: self.trust.guest_keys.clone().into() });
        let guest = self.engine.load_guest_with(module, "brain", offer).await.map_err(|e| refuse(e.to_string()))?;
        let current = self.guest();
        let (new_v, old_v) = (&guest.info().version, &current.info().version);
        if !ordered && catalog::is_older(new_v, old_v) && !self.trust.allow_guest_downgrade {
            return Err(refuse(format!(
                "version {new_v} is older than the live {old_v} and the catalog has no manifest to order them \
                 (set AVAP_ALLOW_GUEST_DOWNGRADE to allow)"
            )));
        }
        let input = GuestInput::bare(SELF_TEST_SCRIPT, None, self.limits.guest());
        let execution = self.run_guest(&guest, &input).await.map_err(|e| refuse(format!("self-test: {e}")))?;
        let output = decode_output(&execution.output).map_err(|e| refuse(format!("self-test output: {e}")))?;
        let result: Option<Value> = output.result.and_then(|r| serde_json::from_str(r.get()).ok());
        if !output.ok || result != Some(json!({"b": 42})) {
            return Err(refuse(format!("self-test gave a wrong answer: {:?}", output.error)));
        }
        Ok(guest)
    }

    /// An `avap` entry must be one valid function definition named like the
    /// entry, as the live guest parses it.
    async fn check_avap_command(&self, guest: &Guest, name: &str, source: &str) -> Result<(), CatalogError> {
        let invalid = |reason: String| CatalogError::Invalid { name: name.to_string(), reason };
        let execution = self
            .run_guest(guest, &GuestInput::bare(source, Some(Mode::Check), self.limits.guest()))
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let output: GuestOutput<'_> = decode_output(&execution.output).map_err(|e| invalid(e.to_string()))?;
        if !output.ok {
            return Err(invalid(output.error.unwrap_or_else(|| "does not parse".into())));
        }
        match output.functions.as_deref() {
            Some([only]) if only == name => Ok(()),
            other => Err(invalid(format!("must define exactly one function named `{name}`, defines {other:?}"))),
        }
    }
}

/// The runner of `guest` for `catalog`: the guest prepared with it (and
/// self-tested), or the guest itself when it cannot be prepared.
pub(crate) async fn prepare_runner(
    engine: &SandboxEngine,
    limits: &Limits,
    guest: &Arc<Guest>,
    catalog: &LiveCatalog,
) -> Result<PreparedRunner, CatalogError> {
    let begun = begin_runner(engine, limits, guest, catalog).await?;
    let guest = finish_runner(engine, limits, guest, begun).await?;
    Ok(PreparedRunner { guest })
}

/// How far [`begin_runner`] got: `None`, the guest cannot be prepared (it
/// runs as it is).
type Begun = Option<Preparation>;

/// The catalog commands the guest found invalid when preparing.
fn catalog_errors(begun: &Begun) -> &[(String, String)] {
    match begun {
        None => &[],
        Some(Preparation::Ready(prepared)) => &prepared.catalog_errors,
        Some(Preparation::Snapshot(snapshot)) => snapshot.catalog_errors(),
    }
}

/// The quick part of preparing `guest` with `catalog`: its snapshot taken,
/// the catalog's problems known ([`SandboxEngine::begin_prepare`]).
async fn begin_runner(
    engine: &SandboxEngine,
    limits: &Limits,
    guest: &Guest,
    catalog: &LiveCatalog,
) -> Result<Begun, CatalogError> {
    let doc = format!("{{\"catalog\":{}}}", catalog.guest_json.as_deref().map_or("{}", |c| c.get()));
    // Preparing parses the whole catalog: more time and fuel than a script.
    let prepare_limits = Limits { timeout: PREPARE_TIMEOUT, fuel: limits.fuel.saturating_mul(10), ..limits.clone() };
    engine.begin_prepare(guest, doc.as_bytes(), &prepare_limits).await.map_err(|e| CatalogError::Guest(e.to_string()))
}

/// The rest: the snapshot compiled if need be, and self-tested; `guest`
/// itself when it cannot be prepared.
async fn finish_runner(
    engine: &SandboxEngine,
    limits: &Limits,
    guest: &Arc<Guest>,
    begun: Begun,
) -> Result<Arc<Guest>, CatalogError> {
    let refuse = |reason: String| CatalogError::Guest(reason);
    let prepared = match begun {
        None => return Ok(guest.clone()),
        Some(Preparation::Ready(prepared)) => *prepared,
        Some(Preparation::Snapshot(snapshot)) => {
            engine.finish_prepare(guest, snapshot).await.map_err(|e| refuse(e.to_string()))?
        }
    };
    let runner = Arc::new(prepared.guest);
    // The snapshot must run: a check of a trivial script, whatever the
    // catalog allows.
    let input = GuestInput::bare("b = 1 + 41", Some(Mode::Check), limits.guest());
    let bytes = serde_json::to_vec(&input).map_err(|e| refuse(e.to_string()))?;
    let execution =
        engine.execute(&runner, limits, &bytes).await.map_err(|e| refuse(format!("snapshot self-test: {e}")))?;
    let output = decode_output(&execution.output).map_err(|e| refuse(format!("snapshot self-test output: {e}")))?;
    if !output.ok {
        return Err(refuse(format!("the snapshot failed its self-test: {:?}", output.error)));
    }
    Ok(runner)
}

/// The largest catalog (its JSON as the guest reads it) with which a new
/// guest serves unprepared while its snapshot compiles: each execution
/// then parses it. The default catalog is about 1 KB; a few hundred
/// commands written in AVAP fit.
pub const EARLY_CATALOG_BYTES: usize = 64 << 10;

/// The largest serial taken now: the brain's serials are the time in
/// milliseconds, so one more than ten minutes ahead of this host's clock is
/// a broken or forged manifest that would otherwise lock out every later
/// catalog until a restart.
fn max_serial() -> u64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(now).unwrap_or(u64::MAX).saturating_add(MAX_SERIAL_SKEW_MS)
}

/// How far ahead of this host's clock a serial may be.
pub const MAX_SERIAL_SKEW_MS: u64 = 10 * 60 * 1000;

/// How long preparing a guest with a catalog may take.
const PREPARE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) struct PreparedRunner {
    pub(crate) guest: Arc<Guest>,
}
