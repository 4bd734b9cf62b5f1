//! Resource limits: one [`Limits`] struct, every field a named limit.
//!
//! The input's `limits` object may override any field (unknown field names
//! are an input error). A violation is an [`Error`] of kind `limit` whose
//! message names the limit, e.g. `limit exceeded: max_call_depth (64)`.
//! Limit errors are never caught by `try()`: a script cannot swallow the
//! exhaustion of its own budget.

use serde::Serialize;

use crate::error::Error;

/// Per-execution resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Nesting of user-function calls. Clamped to [`HARD_MAX_CALL_DEPTH`] so
    /// that the evaluator's native stack stays bounded whatever the input asks.
    pub max_call_depth: u32,
    /// Loop iterations, summed over every `startLoop` of the execution.
    pub max_loop_iterations: u64,
    /// Statements executed plus expression nodes evaluated.
    pub max_steps: u64,
    /// Size in bytes of any string the script produces.
    pub max_string_bytes: usize,
    /// Elements in any list or dict the script produces.
    pub max_collection_len: usize,
    /// Size of the serialized output; past it the output is a small error.
    pub max_output_bytes: usize,
    /// Log entries kept; past it recording stops and `logs_truncated` is set.
    pub max_log_entries: usize,
    /// Size of the script source in bytes.
    pub max_script_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_call_depth: 64,
            max_loop_iterations: 1_000_000,
            max_steps: 10_000_000,
            max_string_bytes: 1 << 20,
            max_collection_len: 100_000,
            max_output_bytes: 4 << 20,
            max_log_entries: 1000,
            max_script_bytes: 1 << 20,
        }
    }
}

/// Ceiling for `max_call_depth` (larger requested values are clamped).
pub const HARD_MAX_CALL_DEPTH: u32 = 200;

/// Fixed syntax limit: nesting of parentheses, brackets, unary operators and
/// indexing inside one expression. Deeper expressions are a syntax error.
pub const MAX_EXPR_DEPTH: usize = 64;

/// Fixed syntax limit: nesting of `if`/`startLoop`/`try` blocks.
pub const MAX_BLOCK_DEPTH: usize = 64;

/// Fixed limit on the evaluator's native recursion (nested blocks,
/// expression nodes and calls, summed over the whole call stack). The ABI's
/// number ([`avap_abi::MAX_EVAL_DEPTH`]), calibrated against the stack the
/// host gives the guest ([`avap_abi::GUEST_STACK_BYTES`]): whatever the
/// script and the requested `max_call_depth`, hitting it is a `limit` error
/// naming `max_eval_depth`, never a stack overflow.
pub const MAX_EVAL_DEPTH: u32 = avap_abi::MAX_EVAL_DEPTH;

/// Fixed limit on how deeply lists and dicts nest inside each other (keeps
/// drop, comparison and serialization recursion bounded). It is the host's
/// number too ([`avap_abi::MAX_VALUE_DEPTH`]): a value at this depth still
/// fits every document the host reads, so nesting past it is always this
/// `limit` error, never a document the host refuses. Values parsed from JSON
/// text are held to it as well.
pub const MAX_VALUE_DEPTH: u32 = avap_abi::MAX_VALUE_DEPTH;

impl Limits {
    /// Defaults overridden by the fields of a JSON object; an unknown field
    /// or a value that is not a non-negative integer is an input error.
    pub fn from_json(obj: serde_json::Map<String, serde_json::Value>) -> Result<Limits, Error> {
        let mut l = Limits::default();
        for (k, v) in obj {
            let n = v.as_u64().ok_or_else(|| Error::input(format!("limit '{k}' must be a non-negative integer")))?;
            let sz = usize::try_from(n).unwrap_or(usize::MAX);
            match k.as_str() {
                "max_call_depth" => l.max_call_depth = u32::try_from(n).unwrap_or(u32::MAX),
                "max_loop_iterations" => l.max_loop_iterations = n,
                "max_steps" => l.max_steps = n,
                "max_string_bytes" => l.max_string_bytes = sz,
                "max_collection_len" => l.max_collection_len = sz,
                avap_abi::OUTPUT_LIMIT => l.max_output_bytes = sz,
                "max_log_entries" => l.max_log_entries = sz,
                "max_script_bytes" => l.max_script_bytes = sz,
                _ => return Err(Error::input(format!("unknown limit '{k}'"))),
            }
        }
        Ok(l)
    }

    /// The call depth actually enforced.
    pub fn call_depth(&self) -> u32 {
        self.max_call_depth.min(HARD_MAX_CALL_DEPTH)
    }

    pub(crate) fn call_depth_error(&self) -> Error {
        Error::limit("max_call_depth", self.call_depth())
    }
    pub(crate) fn loop_error(&self) -> Error {
        Error::limit("max_loop_iterations", self.max_loop_iterations)
    }
    pub(crate) fn steps_error(&self) -> Error {
        Error::limit("max_steps", self.max_steps)
    }
    pub(crate) fn string_error(&self) -> Error {
        Error::limit("max_string_bytes", self.max_string_bytes)
    }
    pub(crate) fn collection_error(&self) -> Error {
        Error::limit("max_collection_len", self.max_collection_len)
    }
    pub(crate) fn output_error(&self) -> Error {
        Error::limit(avap_abi::OUTPUT_LIMIT, self.max_output_bytes)
    }
    pub(crate) fn script_error(&self) -> Error {
        Error::limit("max_script_bytes", self.max_script_bytes)
    }
    pub(crate) fn value_depth_error() -> Error {
        Error::limit("max_value_depth", MAX_VALUE_DEPTH)
    }
}
