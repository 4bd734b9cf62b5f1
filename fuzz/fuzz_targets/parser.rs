//! The AVAP parser on arbitrary text: never panics, and every diagnostic has
//! a 1-based line and column.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn check_diagnostics(diags: &[avap_guest_vm::Diagnostic], what: &str) {
    assert!(!diags.is_empty(), "{what}: Err with no diagnostics");
    for d in diags {
        assert!(d.line >= 1, "{what}: diagnostic with line 0: {d:?}");
        assert!(d.column >= 1, "{what}: diagnostic with column 0: {d:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = avap_guest_vm::parser::parse(text);
    if let Err(diags) = &parsed {
        check_diagnostics(diags, "parse");
    }
    let checked = avap_guest_vm::check(text);
    if let Err(diags) = &checked {
        check_diagnostics(diags, "check");
    }
    assert_eq!(parsed.is_ok(), checked.is_ok(), "parse and check disagree");
});
