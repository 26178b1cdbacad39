//! Empty: this crate exists for its tests (`tests/monkey.rs`) and the pass-through benchmark
//! (`examples/monkey_passthrough.rs`), which need greenhub's `monkey` feature.
