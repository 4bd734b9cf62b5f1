//! The signed package reader: whatever `verify` accepts is exactly what `pack`
//! would have written, and a packed payload survives no single bit flip.
#![no_main]

use avap_wire::package::{OVERHEAD, pack, verify};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-key";

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = verify(KEY, data) {
        assert_eq!(payload.len(), data.len() - OVERHEAD, "payload length");
        let repacked = pack(KEY, payload).expect("pack an accepted payload");
        assert_eq!(repacked, data, "verify accepted a package pack would not write");
    }

    if data.len() % 2 == 1 {
        let packed = pack(KEY, data).expect("pack");
        assert_eq!(packed.len(), data.len() + OVERHEAD);
        assert_eq!(verify(KEY, &packed), Ok(data), "round trip");
        let bits = packed.len() * 8;
        // Two flips chosen by the first byte: one straight into the header
        // and MAC, one spread over the whole package.
        let first = usize::from(data[0]);
        for bit in [first % bits, first * bits / 256] {
            let mut bad = packed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(verify(KEY, &bad).is_err(), "flip of bit {bit} accepted");
        }
    }
});
