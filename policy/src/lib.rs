//! What may cross the sandbox's edges, as pure functions with no I/O: the
//! host calls them, `fuzz/` feeds them arbitrary input, and a reviewer can
//! read every rule in one crate.
//!
//! - [`json`]: request bodies and guest output documents (depth, duplicate
//!   keys, numbers; raw pieces passed through without building trees).
//! - [`sql`]: which statements `ormDirect` may run, lexed per dialect.
//! - [`net`]: which addresses and URLs the `http` capability may reach.

#![forbid(unsafe_code)]

pub mod json;
pub mod net;
pub mod sql;
