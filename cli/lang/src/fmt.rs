//! The canonical layout of AVAP source (`avap fmt`). Being written: until
//! then `format` returns the source unchanged once it parses.

use avap_guest_vm::Diagnostic;

/// `source` in the canonical layout, or the syntax problems that stop it
/// from being formatted (a file that does not parse is left alone).
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    avap_guest_vm::parser::parse(source)?;
    Ok(source.to_string())
}
