//! Writes two copies of the x86_64 switch into OUT_DIR with their symbols renamed, so that both can
//! be linked into one binary: `a.s`, the repository's `arch/x86_64_sysv.s`, and `b.s`, the file
//! `SWITCH_B` names (the same file when it is unset: an A/A run, which shows the noise).
use std::path::PathBuf;

fn copy(src: &PathBuf, tag: &str, out: &PathBuf) {
    let text = std::fs::read_to_string(src)
        .unwrap_or_else(|e| panic!("switch-harness: cannot read {}: {e}", src.display()));
    assert!(
        text.contains("greenhub_v0_switch") && text.contains("greenhub_v0_trampoline"),
        "switch-harness: {} does not define greenhub_v0_switch and greenhub_v0_trampoline",
        src.display()
    );
    let renamed = text
        .replace("greenhub_v0_switch", &format!("switch_{tag}"))
        .replace("greenhub_v0_trampoline", &format!("trampoline_{tag}"));
    std::fs::write(out.join(format!("{tag}.s")), renamed).expect("switch-harness: write OUT_DIR");
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let a = dir.join("../../../arch/x86_64_sysv.s");
    let b = std::env::var_os("SWITCH_B").map_or_else(|| a.clone(), PathBuf::from);
    copy(&a, "a", &out);
    copy(&b, "b", &out);
    println!("cargo:rerun-if-env-changed=SWITCH_B");
    println!("cargo:rerun-if-changed={}", a.display());
    println!("cargo:rerun-if-changed={}", b.display());
}
