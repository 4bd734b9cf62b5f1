//! The language server's conversation over the real binary's stdio
//! (being written).
