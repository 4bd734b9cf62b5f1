//! The default guest module: `avap-guest-vm` built for wasm32-wasip1 with the
//! `guest` profile by this crate's build script, embedded as bytes so the
//! host (and the definition server) run with no other file or service.

#![forbid(unsafe_code)]

/// The wasm module bytes.
pub static GUEST_WASM: &[u8] = include_bytes!(env!("AVAP_GUEST_WASM_PATH"));

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_module_is_wasm() {
        assert_eq!(&super::GUEST_WASM[..4], b"\0asm");
    }
}
