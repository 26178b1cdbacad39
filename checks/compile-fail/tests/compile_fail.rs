//! Compile-fail tests: the types, not documentation, keep greenlets, `Rc`s and hub-local
//! primitives on their hub's thread (invariant 5). Each file under tests/compile_fail/ must fail
//! to compile with the checked-in .stderr; regenerate with `TRYBUILD=overwrite cargo test -p
//! greenhub-compile-fail` after a toolchain change (or a move of the greenhub items they name).
//!
//! One `#[test]`, one `TestCases`, one glob: trybuild builds one project for all cases. The crate
//! is its own (checks/compile-fail) because that project gets this crate's dev-dependencies:
//! here only trybuild, not the benchmark peers.

#[test]
fn hub_local_values_cannot_cross_threads() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
