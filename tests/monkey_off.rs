//! Without the `monkey` feature greenhub defines no libc function: the program uses libc's.

#[test]
fn without_the_feature_libc_functions_are_libcs_own() {
    if cfg!(feature = "monkey") {
        assert!(greenhub::monkey::is_active());
        return;
    }
    assert!(!greenhub::monkey::is_active());
    assert!(!greenhub::monkey::is_exported());
    for name in [c"read", c"recv", c"poll", c"connect", c"nanosleep"] {
        // SAFETY: dlsym only reads the NUL-terminated name.
        let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: as above.
        let libc_own = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        assert!(!global.is_null());
        assert_eq!(global, libc_own, "{name:?} is defined outside libc");
    }
}
