//! The host's reader of guest output documents and its JSON validator: every
//! accepted output has fields of the kinds the ABI promises, and raw pieces
//! handed on are themselves valid JSON.
#![no_main]

use avap_policy::json::{Kind, decode_output, kind, top_level_fields, validate};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = decode_output(data) {
        if let Some(s) = out.status {
            assert!((200..=599).contains(&s), "accepted status {s}");
        }
        for (name, raw) in [("result", out.result), ("variables", out.variables)] {
            if let Some(raw) = raw {
                assert_eq!(kind(raw), Kind::Object, "{name}: {}", raw.get());
            }
        }
        if let Some(raw) = out.logs {
            assert_eq!(kind(raw), Kind::Array, "logs: {}", raw.get());
        }
        assert_eq!(validate(data, avap_abi::MAX_JSON_DEPTH), Ok(()), "decode_output accepted an invalid document");
    }

    let _ = validate(data, 16);
    let fields = top_level_fields(data);
    if validate(data, 100).is_ok()
        && let Ok(fields) = fields
    {
        for (key, raw) in fields {
            if let Err(e) = serde_json::from_str::<&RawValue>(raw.get()) {
                panic!("field {key:?}: raw text {:?} does not re-parse: {e}", raw.get());
            }
        }
    }
});
