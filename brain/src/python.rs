//! The Python payloads of the 27 standard commands, for the original AVAP
//! language servers.
//!
//! An original server compiles every `function` entry's payload as Python
//! and runs it with `exec`, in its own namespace (`task`, `self.conector`,
//! `self.process_step`). Each file in `brain/python/` implements one
//! command there, written for this project from docs/COMMANDS.md; where a
//! command cannot work in that runtime the file raises an error that says
//! so. AVAP hosts never run these: they implement every standard command
//! natively (the guest), and read only the entry's name and interface.

/// Each payload is `_prelude.py` (the helpers every command shares: how an
/// argument is read, the text of a value, dates, patterns), a newline, and
/// the command's own file: the original server runs each entry on its own,
/// so every payload carries what it needs.
macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        &[$(($name, concat!(include_str!("../python/_prelude.py"), "\n", include_str!(concat!("../python/", $name, ".py"))))),*]
    };
}

/// `(command, Python source)`, in the reference order.
pub static STANDARD: &[(&str, &str)] = sources!(
    "addVar",
    "addResult",
    "addParam",
    "if",
    "else",
    "end",
    "startLoop",
    "endLoop",
    "try",
    "exception",
    "RequestGet",
    "RequestPost",
    "randomString",
    "encodeSHA256",
    "encodeMD5",
    "replace",
    "getRegex",
    "ormDirect",
    "getDateTime",
    "getTimeStamp",
    "stampToDatetime",
    "getQueryParamList",
    "getListLen",
    "itemFromList",
    "variableToList",
    "AddvariableToJSON",
    "variableFromJSON",
);

/// The Python source of standard command `name`.
pub fn source(name: &str) -> Option<&'static str> {
    STANDARD.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
