//! The contract between the host and the guest interpreter that both sides
//! must enforce with the same numbers. Nothing here depends on anything: the
//! guest (wasm32) and the host read the same constants.
//!
//! `docs/ABI.md` and `SECURITY.md` cite these values; change them together.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// Deepest nesting of arrays and objects in any JSON document that crosses
/// the boundary: the request body, the guest's input and output documents,
/// and capability requests and replies. The host refuses a deeper request
/// body (400) before the guest runs, and treats a deeper output document as
/// a guest fault (502).
pub const MAX_JSON_DEPTH: u32 = 100;

/// How many levels of [`MAX_JSON_DEPTH`] the documents themselves use around
/// a script's values (the output document `{"result": {"name": VALUE}}`
/// puts a value's outermost container at level 3).
pub const ENVELOPE_DEPTH: u32 = 4;

/// Deepest nesting of lists and dicts a script value may have. Any value the
/// guest builds, reads from the request or parses from text (JSON bodies,
/// `variableFromJSON`, database rows) is refused past it with a `limit`
/// error, so every output document stays within [`MAX_JSON_DEPTH`].
pub const MAX_VALUE_DEPTH: u32 = MAX_JSON_DEPTH - ENVELOPE_DEPTH;

/// Largest capability request document a guest may hand over, in bytes.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Largest capability reply document the host hands back, in bytes; a larger
/// reply becomes an error reply. It also bounds what one database row may
/// cost the host.
pub const MAX_REPLY_BYTES: usize = 8 << 20;

/// The HTTP statuses a script may set with `_status`: `200..=599`. 1xx are
/// protocol signals (a `101` would switch protocols) and are never a
/// script's answer.
pub const MIN_SCRIPT_STATUS: u16 = 200;
/// See [`MIN_SCRIPT_STATUS`].
pub const MAX_SCRIPT_STATUS: u16 = 599;

// A value at its deepest fits any document; a request fits a reply.
const _: () = assert!(MAX_VALUE_DEPTH + ENVELOPE_DEPTH <= MAX_JSON_DEPTH);
const _: () = assert!(MAX_REQUEST_BYTES <= MAX_REPLY_BYTES);

/// Whether `status` is one a script may answer with.
pub const fn is_script_status(status: u16) -> bool {
    status >= MIN_SCRIPT_STATUS && status <= MAX_SCRIPT_STATUS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_statuses_exclude_informational_ones() {
        assert!(!is_script_status(101));
        assert!(!is_script_status(199));
        assert!(is_script_status(200));
        assert!(is_script_status(599));
        assert!(!is_script_status(600));
    }
}
