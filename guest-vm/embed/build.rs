//! Builds the default guest module (the `avap-guest-vm` crate, for
//! wasm32-wasip1, `guest` profile) and hands its path to `lib.rs` as
//! `AVAP_GUEST_WASM_PATH`, where `include_bytes!` embeds it.
//!
//! The nested cargo uses its own target directory (`target/guest-build`), so
//! it never waits on the lock of the outer build. Setting `AVAP_GUEST_WASM`
//! to a prebuilt module skips the nested build and embeds that module.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip1";
const GUEST_PROFILE: &str = "guest";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("guest-vm/embed/ lives inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out_dir.join("avap_guest_vm.wasm");

    println!("cargo:rerun-if-env-changed=AVAP_GUEST_WASM");
    if let Ok(prebuilt) = env::var("AVAP_GUEST_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| panic!("copy AVAP_GUEST_WASM={prebuilt}: {e}"));
    } else {
        for path in ["guest-vm/src", "guest-vm/Cargo.toml", "abi/src", "abi/Cargo.toml", "Cargo.lock", "Cargo.toml"] {
            println!("cargo:rerun-if-changed={}", workspace.join(path).display());
        }
        let built = build_guest(&workspace);
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
    println!("cargo:rustc-env=AVAP_GUEST_WASM_PATH={}", dest.display());
}

fn build_guest(workspace: &Path) -> PathBuf {
    let target_dir = env::var_os("AVAP_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target").join("guest-build"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--locked", "-p", "avap-guest-vm", "--target", GUEST_TARGET, "--profile", GUEST_PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the outer (native) build must not leak into the wasm
    // build; clippy's wrapper would lint the guest a second time.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the guest: {e}"));
    if !status.success() {
        panic!(
            "building the guest module failed ({status}). Is the target installed? Run: rustup target add {GUEST_TARGET}"
        );
    }
    target_dir.join(GUEST_TARGET).join(GUEST_PROFILE).join("avap_guest_vm.wasm")
}
