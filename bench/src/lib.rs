//! Nothing to use: this crate holds greenhub's comparison benchmarks (`benches/`), kept out of the
//! root crate so its peers (tokio, may, corosensei, hdrhistogram) are not built by `cargo test` or
//! the examples. Run them with `cargo bench -p greenhub-bench --bench NAME`; see BENCHMARKS.md.
#![deny(unsafe_code)]
