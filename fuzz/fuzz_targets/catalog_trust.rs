//! What the brain sends that the host parses before trusting it: a manifest
//! payload (inside a package with the right key, so parsing is reached) and
//! a guest entry's `interface_json` signature: no panic on any input, an
//! opened manifest keeps its own invariants, and no signature the fuzzer
//! writes verifies (it cannot forge Ed25519).
#![no_main]

use avap_wire::guest_sig::{GuestSignature, dev_signing_key};
use avap_wire::manifest::Manifest;
use avap_wire::package::pack;
use avap_wire::pb::CommandResponse;
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-manifest-key";

fuzz_target!(|data: &[u8]| {
    let code = pack(KEY, data).expect("pack");
    let entry = CommandResponse { name: "avap-catalog-manifest".into(), r#type: "manifest".into(), code, ..Default::default() };
    if let Ok(manifest) = Manifest::open(&entry, KEY) {
        assert!(manifest.guest.as_ref().is_none_or(|g| g.rollout_percent <= 100));
        // An empty catalog matches only a manifest that lists nothing.
        if manifest.check(&[]).is_ok() {
            assert!(manifest.entries.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sig) = GuestSignature::from_interface_json(text) {
            let trusted = [dev_signing_key().public()];
            // The fuzzer cannot forge Ed25519: nothing it writes verifies.
            assert!(sig.verify(b"\0asm\x01\0\0\0", &trusted).is_err(), "a forged signature verified");
        }
    }
});
