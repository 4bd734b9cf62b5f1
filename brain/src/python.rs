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
//!
//! That runtime has none of the host's sandbox: the payloads run in the
//! original server's own process. What can be closed there is closed in
//! the payloads themselves: `RequestGet`/`RequestPost` reach public
//! addresses only (unless `AVAP_HTTP_ALLOW` on that server), checked at
//! every redirect and connected to as checked, within a deadline and a
//! size cap (`_net.py`); `getRegex`/`replace` cap the text and cut a
//! backtracking match off at a deadline (`regex_call` in `_prelude.py`).

/// Each payload is `_prelude.py` (the helpers every command shares: how an
/// argument is read, the text of a value, dates, patterns with a deadline),
/// a newline, for `RequestGet` and `RequestPost` `_net.py` (where a request
/// may go and how much it may take back) and a newline, then the command's
/// own file: the original server runs each entry on its own, so every
/// payload carries what it needs.
macro_rules! sources {
    ($($name:literal $(+ $extra:literal)?),* $(,)?) => {
        &[$(($name, concat!(
            include_str!("../python/_prelude.py"),
            "\n",
            $(include_str!(concat!("../python/", $extra, ".py")), "\n",)?
            include_str!(concat!("../python/", $name, ".py"))
        ))),*]
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
    "RequestGet" + "_net",
    "RequestPost" + "_net",
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
