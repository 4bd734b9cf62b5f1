//! JSON at the boundary: what the host accepts from a client or a guest
//! before it forwards any of it.
//!
//! The host never builds a `serde_json::Value` tree from a client's or a
//! guest's document (a tree costs ~30x the text). It [`validate`]s the text in
//! one pass, which holds it to [`MAX_JSON_DEPTH`](avap_abi::MAX_JSON_DEPTH)
//! levels, refuses duplicate keys (two parsers could disagree on which one
//! wins) and numbers no `f64` can hold, and then splits it into raw,
//! already-valid pieces ([`top_level_fields`], [`decode_output`]) that are
//! copied through as text.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a document was refused. The message says where (line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

/// Checks that `bytes` is one JSON document that nests at most `max_depth`
/// arrays and objects deep, has no object with the same key twice, and no
/// number out of `f64`'s range. Linear in the input; allocates only the keys
/// of the objects it is inside of.
pub fn validate(bytes: &[u8], max_depth: u32) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Check { depth: 0, max_depth }.deserialize(&mut de).map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))
}

/// One value being checked, `depth` containers deep.
#[derive(Clone, Copy)]
struct Check {
    depth: u32,
    max_depth: u32,
}

impl Check {
    fn enter<E: de::Error>(self) -> Result<Check, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(format_args!("nested deeper than {} levels", self.max_depth)));
        }
        Ok(Check { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("number out of range")) }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if keys.contains(&key.0) {
                return Err(de::Error::custom(format_args!("duplicate key {:?}", short(&key.0))));
            }
            keys.insert(key.0);
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// At most 40 characters of `s`, for messages.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

/// The top-level fields of a JSON object, in order, each as raw JSON text.
/// `Err` when the document is not an object. Call [`validate`] first: this
/// does not look for duplicate keys or check depth.
pub fn top_level_fields(bytes: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, JsonError> {
    struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Fields<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Fields<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<Key<'de>>()? {
                        out.push((key.0, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(Fields(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Fields<'_>>(bytes).map(|f| f.0).map_err(|e| JsonError(e.to_string()))
}

/// What kind of JSON value a raw piece holds, from its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// The kind of a raw value (serde_json's raw values start at the value's
/// first character).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') => Kind::Null,
        _ => Kind::Number,
    }
}

/// The output document of a guest (docs/ABI.md), as the ABI crate types it.
pub use avap_abi::wire::GuestOutput;

/// Reads a guest's output document: valid JSON within the document depth,
/// and each field of the kind the ABI says (`result` and `variables`
/// objects, `logs` and `diagnostics` arrays, a `status` a script may set).
/// `Err` means the guest broke the ABI.
pub fn decode_output(bytes: &[u8]) -> Result<GuestOutput<'_>, JsonError> {
    validate(bytes, avap_abi::MAX_JSON_DEPTH)?;
    let out: GuestOutput<'_> = serde_json::from_slice(bytes).map_err(|e| JsonError(e.to_string()))?;
    let expect = |field: &str, raw: Option<&RawValue>, want: Kind| match raw.map(kind) {
        Some(k) if k != want => Err(JsonError(format!("`{field}` must be {want:?}, not {k:?}"))),
        _ => Ok(()),
    };
    expect("result", out.result, Kind::Object)?;
    expect("variables", out.variables, Kind::Object)?;
    expect("logs", out.logs, Kind::Array)?;
    expect("diagnostics", out.diagnostics, Kind::Array)?;
    expect("catalog_errors", out.catalog_errors, Kind::Array)?;
    if let Some(status) = out.status
        && !avap_abi::is_script_status(status)
    {
        return Err(JsonError(format!("status {status} is outside the statuses a script may set")));
    }
    if !out.ok && out.kind.is_none() {
        return Err(JsonError("a failure without a `kind`".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn validate_bounds_depth_exactly() {
        assert_eq!(validate(nested(100).as_bytes(), 100), Ok(()));
        let err = validate(nested(101).as_bytes(), 100).expect_err("too deep");
        assert!(err.0.contains("nested deeper than 100 levels"), "{err}");
        // Objects count the same as arrays.
        let obj = format!("{}1{}", "{\"a\":".repeat(3), "}".repeat(3));
        assert_eq!(validate(obj.as_bytes(), 3), Ok(()));
        assert!(validate(obj.as_bytes(), 2).is_err());
        // Far past serde_json's own limit: still our message, no recursion.
        let err = validate(nested(100_000).as_bytes(), 100).expect_err("too deep");
        assert!(err.0.contains("nested deeper than 100 levels"), "{err}");
    }

    #[test]
    fn validate_refuses_what_parsers_disagree_on() {
        for (doc, needle) in [
            (&br#"{"a": 1, "a": 2}"#[..], "duplicate key \"a\""),
            (br#"{"x": {"b": 1, "b\u0000": 2, "b": 3}}"#, "duplicate key \"b\""),
            (br#"{"\u0061": 1, "a": 2}"#, "duplicate key \"a\""),
            (b"[1e400]", "number out of range"),
            (b"\xef\xbb\xbf{}", "expected value"),
            (br#"["\ud800"]"#, "escape"),
            (br#"["\x"]"#, "invalid escape"),
            (b"{} {}", "trailing characters"),
            (b"[1,]", "trailing comma"),
            (b"\"a\xff\"", "invalid unicode"),
            (b"", "EOF"),
        ] {
            let err = validate(doc, 100).expect_err("refused");
            assert!(err.0.contains(needle), "{}: {err}", String::from_utf8_lossy(doc));
        }
        for ok in [&br#"{"a": 1, "b": {"a": 2}}"#[..], b"[1e300, -0.0, 123456789012345678901234567890]", b" null "] {
            assert_eq!(validate(ok, 100), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn top_level_fields_are_raw_and_ordered() {
        let doc = br#"{"script": "a\nb", "variables": {"x": [1, 2]}, "n": 1.50}"#;
        let fields = top_level_fields(doc).expect("object");
        let shown: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(shown, [("script", r#""a\nb""#), ("variables", r#"{"x": [1, 2]}"#), ("n", "1.50")]);
        assert!(top_level_fields(b"[1]").is_err());
    }

    #[test]
    fn output_fields_must_have_their_kinds() {
        let ok = br#"{"ok":true,"status":201,"result":{"a":[1]},"variables":{},"logs":[],"logs_truncated":false}"#;
        let out = decode_output(ok).expect("valid");
        assert_eq!((out.status, out.result.map(RawValue::get)), (Some(201), Some(r#"{"a":[1]}"#)));
        for bad in [
            &br#"{"ok":true,"status":101,"result":{}}"#[..],
            br#"{"ok":true,"status":700}"#,
            br#"{"ok":true,"result":[1]}"#,
            br#"{"ok":true,"logs":{}}"#,
            br#"{"ok":false,"error":"x"}"#,
            br#"{"ok":false,"kind":"mystery"}"#,
            br#"{"ok":true,"ok":false}"#,
            b"not json",
        ] {
            assert!(decode_output(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!(r#"{{"ok":true,"result":{{"a":{}}}}}"#, nested(99));
        assert!(decode_output(deep.as_bytes()).is_err());
        let fits = format!(r#"{{"ok":true,"result":{{"a":{}}}}}"#, nested(98));
        assert!(decode_output(fits.as_bytes()).is_ok());
    }
}
