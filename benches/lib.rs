//! Benchmarks live in execute.rs.
