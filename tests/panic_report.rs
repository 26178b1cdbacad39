//! A panic inside a worker greenlet is reported with the greenlet's id and name; kills print
//! nothing; panics outside workers keep std's report. Checked in a child process, whose stderr the
//! parent reads.

mod support;

use std::time::Duration;

use greenhub::hub;

const CHILD: &str = "child_panics_and_a_kill";

#[test]
fn child_panics_and_a_kill() {
    if !support::is_child(CHILD) {
        return; // only meaningful as the child of `panic_reports_name_the_greenlet`
    }
    hub::run(|| {
        let named = hub::Builder::new()
            .name("worker-x")
            .spawn(|| panic!("marker-named"));
        let id = named.id();
        assert!(named.join().is_err());
        eprintln!("named id={id}");
        let anon = hub::spawn(|| panic!("marker-anon"));
        let id = anon.id();
        assert!(anon.join().is_err());
        eprintln!("anon id={id}");
        eprintln!("kill starts");
        let victim = hub::spawn(|| hub::sleep(Duration::from_secs(60)));
        hub::yield_now();
        victim.kill();
        eprintln!("kill done");
    });
    // The main greenlet: std's report, no greenlet line.
    let r = std::panic::catch_unwind(|| panic!("marker-main"));
    assert!(r.is_err());
}

#[test]
fn panic_reports_name_the_greenlet() {
    if support::is_child(CHILD) {
        return;
    }
    let out = support::run_child(CHILD);
    support::assert_child_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let id_of = |tag: &str| -> String {
        let l = lines.iter().find(|l| l.starts_with(tag)).expect(tag);
        l.split('=').nth(1).unwrap().to_owned()
    };
    let (named, anon) = (id_of("named id="), id_of("anon id="));
    let before = |marker: &str| -> &str {
        let i = lines
            .iter()
            .position(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("{marker} not reported:\n{err}"));
        // std prints (a blank line and) "thread '..' panicked at file:line:", then the message.
        assert!(lines[i - 1].contains("panicked at"), "{err}");
        lines[..i - 1]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .copied()
            .unwrap_or("")
    };
    assert_eq!(
        before("marker-named"),
        format!("greenhub: panic in greenlet {named} (worker-x):")
    );
    assert_eq!(
        before("marker-anon"),
        format!("greenhub: panic in greenlet {anon}:")
    );
    assert!(!before("marker-main").contains("greenhub"), "{err}");
    let kill: Vec<&&str> = lines
        .iter()
        .skip_while(|l| **l != "kill starts")
        .take_while(|l| **l != "kill done")
        .collect();
    assert_eq!(kill, [&"kill starts"], "a kill printed something:\n{err}");
}
