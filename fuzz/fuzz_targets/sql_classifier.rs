//! The `ormDirect` statement classifier in both dialects: never panics, a NUL
//! or an empty statement is always refused, and a refused statement stays
//! refused whatever follows it.
#![no_main]

use avap_policy::sql::{Dialect, check_statement};
use libfuzzer_sys::fuzz_target;

const DIALECTS: [Dialect; 2] = [Dialect::Postgres, Dialect::Sqlite];

/// Statements refused in both dialects.
const REFUSED: &[&str] = &[
    "SET x = 1",
    "COPY t TO PROGRAM 'id'",
    "DO $$ $$",
    "PRAGMA writable_schema=1",
    "ATTACH 'x' AS y",
    "GRANT ALL ON t TO public",
    "CREATE ROLE r",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for d in DIALECTS {
        let result = check_statement(&text, d);
        if text.contains('\0') {
            assert!(result.is_err(), "{d:?}: statement with NUL accepted");
        }
        if result.is_ok() {
            assert!(!text.trim().is_empty(), "{d:?}: empty statement accepted");
        }
    }

    // A refused statement followed by anything stays refused.
    let Some((&first, rest)) = data.split_first() else { return };
    let suffix = String::from_utf8_lossy(rest);
    if suffix.starts_with(|c: char| c.is_whitespace() || c == ';') {
        let prefix = REFUSED[usize::from(first) % REFUSED.len()];
        for d in DIALECTS {
            let sql = format!("{prefix}{suffix}");
            assert!(check_statement(&sql, d).is_err(), "{d:?}: accepted {sql:?}");
        }
    }
});
