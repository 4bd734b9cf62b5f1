//! The wasm ABI ([`avap_abi`], version [`avap_abi::ABI_VERSION`]): the only
//! unsafe code of the crate. The export and import names below are written
//! out because `no_mangle` and `link` need literals; the host checks every
//! module against `avap_abi::export` and `avap_abi::import` at load, and a
//! host test checks this module's names against them.
//!
//! The host drives one execution per instance:
//!
//! 1. `avap_alloc(len)` — the guest allocates `len` bytes and returns the
//!    pointer (0 on failure or when `len` is negative or above 16 MiB). The
//!    host writes the input JSON there. The guest owns this memory.
//! 2. `avap_run(ptr, len)` — the guest takes back the buffer returned by
//!    `avap_alloc(len)` (and frees it), runs [`crate::run_json`] and returns
//!    `(out_ptr << 32) | out_len`. The output buffer is leaked: it lives until
//!    the host drops the instance (one call per instance).
//!
//! `avap_abi_version()` returns [`crate::ABI_VERSION`];
//! `avap_guest_version()` returns `(ptr << 32) | len` of the static UTF-8
//! [`crate::GUEST_VERSION`] (stored inside [`crate::GUEST_VERSION_RECORD`]).
//!
//! Pointers are wasm32 addresses (u32), packed unsigned into the i64.
//!
//! Capabilities are the imports of the `avap` module (see [`crate::host`]):
//! `http_request(ptr, len) -> i32` and `db_query(ptr, len) -> i32` hand the
//! host a JSON request and return the length of its JSON reply, which the
//! host holds until `reply_read(ptr, len) -> i32` copies it into guest
//! memory (`len` must be that length; returns 0). The host answers every
//! call it can read with a reply (errors included) and stops the execution
//! on a broken call; a negative length is treated as an error all the same.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc, dealloc};

/// Largest input the guest accepts.
const MAX_INPUT: i32 = avap_abi::MAX_INPUT_BYTES as i32;
const _: () = assert!(avap_abi::MAX_INPUT_BYTES <= i32::MAX as usize);

fn pack(ptr: *const u8, len: usize) -> i64 {
    avap_abi::pack(ptr as usize as u32, len as u32)
}

/// The layout of an input buffer of `len` bytes (at least 1 byte, so the
/// pointer is never dangling or zero).
fn layout(len: usize) -> Option<Layout> {
    Layout::array::<u8>(len.max(1)).ok()
}

#[unsafe(no_mangle)]
pub extern "C" fn avap_abi_version() -> i32 {
    crate::ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn avap_guest_version() -> i64 {
    // Points into the record so the version has one place in the module.
    let version = crate::GUEST_VERSION_RECORD.get(crate::GUEST_VERSION_PREFIX.len()..).unwrap_or_default();
    pack(version.as_ptr(), version.len())
}

#[unsafe(no_mangle)]
pub extern "C" fn avap_alloc(len: i32) -> i32 {
    if !(0..=MAX_INPUT).contains(&len) {
        return 0;
    }
    let Some(layout) = layout(len as usize) else {
        return 0;
    };
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc(layout) };
    ptr as usize as i32
}

#[unsafe(no_mangle)]
pub extern "C" fn avap_run(ptr: i32, len: i32) -> i64 {
    answer(ptr, len, crate::run_json)
}

/// Optional (the host calls it when exported): prepares the instance with
/// the catalog in `[ptr, ptr + len)` (a buffer from `avap_alloc(len)`, taken
/// back), before the host snapshots it; returns `(ptr << 32) | len` of a
/// result document like `avap_run`.
#[unsafe(no_mangle)]
pub extern "C" fn avap_prepare(ptr: i32, len: i32) -> i64 {
    answer(ptr, len, crate::prepare_json)
}

/// Takes back the input buffer `avap_alloc(len)` returned, hands its bytes
/// to `f` (an empty input when the buffer is not one it could have
/// returned), and leaks `f`'s answer for the host to read:
/// `(ptr << 32) | len`.
fn answer(ptr: i32, len: i32, f: fn(&[u8]) -> Vec<u8>) -> i64 {
    let output = if ptr == 0 || !(0..=MAX_INPUT).contains(&len) {
        f(b"")
    } else {
        let len = len as usize;
        let p = ptr as u32 as usize as *mut u8;
        // SAFETY: the host contract: `ptr` was returned by `avap_alloc(len)`
        // with this same `len`, was filled by the host, and is used once.
        let input = unsafe { std::slice::from_raw_parts(p, len) };
        let out = f(input);
        if let Some(layout) = layout(len) {
            // SAFETY: allocated by `avap_alloc` with this same layout.
            unsafe { dealloc(p, layout) };
        }
        out
    };
    let output = output.into_boxed_slice();
    let len = output.len();
    let leaked: &'static mut [u8] = Box::leak(output);
    pack(leaked.as_ptr(), len)
}

#[link(wasm_import_module = "avap")]
unsafe extern "C" {
    fn http_request(ptr: i32, len: i32) -> i32;
    fn db_query(ptr: i32, len: i32) -> i32;
    fn reply_read(ptr: i32, len: i32) -> i32;
}

/// The host, through the `avap` imports.
pub(crate) struct WasmHost;

impl crate::host::Host for WasmHost {
    fn call(&mut self, capability: crate::host::Capability, request: &[u8]) -> Result<Vec<u8>, String> {
        let len = i32::try_from(request.len()).map_err(|_| "the request is too large".to_string())?;
        let ptr = request.as_ptr() as usize as i32;
        // SAFETY: plain imported functions; the host only reads
        // `request[..len]`, which is live for the call.
        let reply_len = unsafe {
            match capability {
                crate::host::Capability::Http => http_request(ptr, len),
                crate::host::Capability::Db => db_query(ptr, len),
            }
        };
        let reply_len = usize::try_from(reply_len)
            .map_err(|_| format!("the host refused the '{}' request (code {reply_len})", capability.name()))?;
        let mut reply = vec![0u8; reply_len];
        // SAFETY: the host writes exactly `reply_len` bytes into `reply`,
        // which is that long.
        let code = unsafe { reply_read(reply.as_mut_ptr() as usize as i32, reply_len as i32) };
        if code != 0 {
            return Err(format!("the host could not hand over its reply (code {code})"));
        }
        Ok(reply)
    }
}
