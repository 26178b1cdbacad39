//! Nothing to use: this crate holds the compile-fail cases of `tests/compile_fail/` (run by
//! `cargo test` at the workspace root). See tests/compile_fail.rs.
#![deny(unsafe_code)]
