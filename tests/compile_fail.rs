//! Compile-fail tests: the types, not documentation, keep greenlets, `Rc`s and hub-local
//! primitives on their hub's thread (invariant 5). Each file under tests/compile_fail/ must fail
//! to compile with the checked-in .stderr; regenerate with `TRYBUILD=overwrite cargo test --test
//! compile_fail` after a toolchain change.

#[test]
fn hub_local_values_cannot_cross_threads() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
