//! How every request ends: one [`Outcome`] per way, which knows its HTTP
//! status, the `kind` a client reads, and the label the metrics count it
//! under. WIRE.md (section 3) and the README's status table are written
//! from [`Outcome::ALL`].

use axum::http::StatusCode;

use avap_abi::ErrorKind;

use crate::runtime::SandboxError;

/// The ways an API request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The script ran (its status is its own: 200 unless it set `_status`).
    Ok,
    /// `compile` validated and signed the script.
    Compiled,
    /// The request was malformed, or the guest refused its input.
    BadRequest,
    /// The body is larger than the body cap.
    TooLarge,
    /// The body did not arrive within the body timeout.
    BodyTimeout,
    /// No execution slot (or body budget) in time; retry.
    Busy,
    /// A browser request from an origin that is not allowed.
    CrossOrigin,
    /// The host needs an API token and none (or a wrong one) was sent.
    Unauthorized,
    /// A host listening on loopback got a request for another name (a DNS
    /// rebinding page): it answers only loopback names.
    MisdirectedHost,
    /// A signed package failed verification; it was not run.
    Integrity,
    /// `compile` would replace a package another caller stored.
    Conflict,
    /// The script does not parse.
    SyntaxError,
    /// The script failed at run time, outside any `try()`.
    RuntimeError,
    /// The script hit one of the interpreter's limits.
    LimitError,
    /// The script's native recursion exhausted the guest's stack.
    StackOverflow,
    /// The wall-clock deadline passed.
    Timeout,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The guest's memory cap was hit.
    MemoryLimit,
    /// The output document would be larger than the output cap.
    OutputTooLarge,
    /// The guest crashed or broke the ABI.
    GuestCrash,
    /// A fault of the host; details go to the log only.
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 21] = [
        Outcome::Ok,
        Outcome::Compiled,
        Outcome::BadRequest,
        Outcome::TooLarge,
        Outcome::BodyTimeout,
        Outcome::Busy,
        Outcome::CrossOrigin,
        Outcome::Unauthorized,
        Outcome::MisdirectedHost,
        Outcome::Integrity,
        Outcome::Conflict,
        Outcome::SyntaxError,
        Outcome::RuntimeError,
        Outcome::LimitError,
        Outcome::StackOverflow,
        Outcome::Timeout,
        Outcome::OutOfFuel,
        Outcome::MemoryLimit,
        Outcome::OutputTooLarge,
        Outcome::GuestCrash,
        Outcome::Internal,
    ];

    /// The response status (for [`Outcome::Ok`], unless the script set one).
    pub const fn status(self) -> StatusCode {
        match self {
            Outcome::Ok | Outcome::Compiled => StatusCode::OK,
            Outcome::BadRequest
            | Outcome::SyntaxError
            | Outcome::RuntimeError
            | Outcome::LimitError
            | Outcome::StackOverflow => StatusCode::BAD_REQUEST,
            Outcome::Unauthorized => StatusCode::UNAUTHORIZED,
            Outcome::MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            Outcome::CrossOrigin | Outcome::Integrity => StatusCode::FORBIDDEN,
            Outcome::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Outcome::Conflict => StatusCode::CONFLICT,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::GuestCrash => StatusCode::BAD_GATEWAY,
            Outcome::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Timeout | Outcome::OutOfFuel => StatusCode::GATEWAY_TIMEOUT,
            Outcome::MemoryLimit | Outcome::OutputTooLarge => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The `kind` of an error response (and the `outcome` label of
    /// `avap_requests_total`).
    pub const fn kind(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Compiled => "compiled",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::BodyTimeout => "body_timeout",
            Outcome::Busy => "busy",
            Outcome::CrossOrigin => "cross_origin",
            Outcome::Unauthorized => "unauthorized",
            Outcome::MisdirectedHost => "misdirected_host",
            Outcome::Integrity => "integrity",
            Outcome::Conflict => "conflict",
            Outcome::SyntaxError => "syntax_error",
            Outcome::RuntimeError => "runtime_error",
            Outcome::LimitError => "limit_error",
            Outcome::StackOverflow => "stack_overflow",
            Outcome::Timeout => "timeout",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::OutputTooLarge => "output_too_large",
            Outcome::GuestCrash => "guest_crash",
            Outcome::Internal => "internal",
        }
    }

    /// The `reason` label of `avap_rejects_total` for a request turned away
    /// before anything ran; `None` for outcomes of an execution.
    pub const fn reject_reason(self) -> Option<&'static str> {
        match self {
            Outcome::BadRequest => Some("bad_request"),
            Outcome::TooLarge => Some("body_too_large"),
            Outcome::BodyTimeout => Some("body_timeout"),
            Outcome::Busy => Some("busy"),
            Outcome::CrossOrigin => Some("cross_origin"),
            Outcome::Unauthorized => Some("unauthorized"),
            Outcome::MisdirectedHost => Some("misdirected_host"),
            Outcome::Integrity => Some("integrity"),
            _ => None,
        }
    }

    /// A failed script, by the `kind` its guest reported.
    pub const fn of_script(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Syntax => Outcome::SyntaxError,
            ErrorKind::Runtime => Outcome::RuntimeError,
            ErrorKind::Limit => Outcome::LimitError,
            ErrorKind::Input => Outcome::BadRequest,
        }
    }

    /// An execution that produced no output document.
    pub const fn of_sandbox(err: &SandboxError) -> Self {
        match err {
            SandboxError::Busy(_) => Outcome::Busy,
            SandboxError::Timeout(_) => Outcome::Timeout,
            SandboxError::OutOfFuel(_) => Outcome::OutOfFuel,
            SandboxError::MemoryLimit(_) => Outcome::MemoryLimit,
            SandboxError::StackOverflow => Outcome::StackOverflow,
            SandboxError::InputTooLarge { .. } => Outcome::TooLarge,
            SandboxError::OutputTooLarge { .. } => Outcome::OutputTooLarge,
            SandboxError::GuestCrash(_) | SandboxError::GuestAbi(_) => Outcome::GuestCrash,
            SandboxError::Internal(_) => Outcome::Internal,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WIRE.md's table of errors lists every failing outcome with its status.
    #[test]
    fn the_wire_reference_lists_every_outcome() {
        let wire = include_str!("../../../docs/WIRE.md");
        for o in Outcome::ALL.into_iter().filter(|o| !o.status().is_success()) {
            let row = format!("| {} | `{}` |", o.status().as_u16(), o.kind());
            assert!(wire.contains(&row), "docs/WIRE.md has no row `{row}`");
        }
    }

    #[test]
    fn every_outcome_has_its_own_kind_and_an_error_status_unless_it_succeeded() {
        let mut kinds: Vec<&str> = Outcome::ALL.iter().map(|o| o.kind()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), Outcome::ALL.len());
        for o in Outcome::ALL {
            let success = matches!(o, Outcome::Ok | Outcome::Compiled);
            assert_eq!(o.status().is_success(), success, "{o}");
            assert!(o.reject_reason().is_none() || o.status().is_client_error() || o == Outcome::Busy, "{o}");
        }
    }
}
