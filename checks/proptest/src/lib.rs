//! Nothing to use: this crate holds the property test of greenhub's sync primitives
//! (`tests/sync_proptest.rs`, run by `cargo test` at the workspace root).
#![deny(unsafe_code)]
