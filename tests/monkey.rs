//! smoke
#[test]
fn active() {
    assert!(greenhub::monkey::is_active());
    eprintln!("exported: {}", greenhub::monkey::is_exported());
}
