//! Empty: this crate exists for its tests (`tests/`), which use async crates that the root
//! crate's examples should not have to build.
