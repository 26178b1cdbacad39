//! tracing spans follow the greenlet: a span entered by one greenlet (or given with
//! `Builder::span`) covers that greenlet's events only, across every switch.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenhub::hub;
use tracing::{info, info_span};

/// A `MakeWriter` collecting the formatted output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` on this thread with a capturing fmt subscriber; returns the lines it logged.
fn captured(f: impl FnOnce()) -> Vec<String> {
    let cap = Capture::default();
    let writer = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_target(false)
        .without_time()
        .with_level(false)
        .finish();
    tracing::subscriber::with_default(sub, f);
    let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    out.lines().map(|l| l.trim().to_owned()).collect()
}

/// The one line containing `msg`.
fn line<'a>(lines: &'a [String], msg: &str) -> &'a str {
    let found: Vec<_> = lines.iter().filter(|l| l.ends_with(msg)).collect();
    assert_eq!(found.len(), 1, "{msg:?} in {lines:#?}");
    found[0]
}

#[test]
fn a_span_held_across_a_park_does_not_leak_into_other_greenlets() {
    let lines = captured(|| {
        hub::run(|| {
            let a = hub::spawn(|| {
                let _conn = info_span!("conn", id = "A").entered();
                hub::sleep(Duration::from_millis(10));
                info!("A after the sleep");
            });
            let b = hub::spawn(|| {
                hub::yield_now(); // A is parked with its guard held
                info!("B logs while A is parked");
            });
            b.join().unwrap();
            info!("run's greenlet logs");
            a.join().unwrap();
        })
    });
    assert_eq!(
        line(&lines, "B logs while A is parked"),
        "B logs while A is parked"
    );
    assert_eq!(line(&lines, "run's greenlet logs"), "run's greenlet logs");
    assert_eq!(
        line(&lines, "A after the sleep"),
        "conn{id=\"A\"}: A after the sleep"
    );
}

#[test]
fn builder_span_is_entered_whenever_the_greenlet_runs() {
    let lines = captured(|| {
        hub::run(|| {
            let g = hub::Builder::new()
                .span(info_span!("worker", n = 1))
                .spawn(|| {
                    info!("first");
                    hub::yield_now();
                    info!("second");
                    hub::sleep(Duration::from_millis(2));
                    let _inner = info_span!("step").entered();
                    info!("third");
                });
            let other = hub::spawn(|| {
                for _ in 0..3 {
                    info!("other");
                    hub::yield_now();
                }
            });
            let via_helper = hub::spawn_instrumented(info_span!("helper"), || {
                hub::yield_now();
                info!("helped");
            });
            g.join().unwrap();
            other.join().unwrap();
            via_helper.join().unwrap();
            info!("after");
        })
    });
    assert_eq!(line(&lines, "first"), "worker{n=1}: first");
    assert_eq!(line(&lines, "second"), "worker{n=1}: second");
    assert_eq!(line(&lines, "third"), "worker{n=1}:step: third");
    assert_eq!(line(&lines, "helped"), "helper: helped");
    assert_eq!(line(&lines, "after"), "after");
    let others: Vec<_> = lines.iter().filter(|l| l.ends_with("other")).collect();
    assert_eq!(others.len(), 3);
    assert!(others.iter().all(|l| *l == "other"), "{others:?}");
}

#[test]
fn nested_spans_come_back_in_order_and_dropping_the_guard_after_a_park_exits() {
    let lines = captured(|| {
        hub::run(|| {
            let a = hub::spawn(|| {
                let outer = info_span!("outer").entered();
                let inner = info_span!("inner").entered();
                hub::yield_now();
                info!("nested");
                drop(inner);
                hub::yield_now();
                info!("outer only");
                drop(outer);
                hub::yield_now();
                info!("none");
            });
            let b = hub::spawn(|| {
                for i in 0..3 {
                    info!("b{i}");
                    hub::yield_now();
                }
            });
            a.join().unwrap();
            b.join().unwrap();
        })
    });
    assert_eq!(line(&lines, "nested"), "outer:inner: nested");
    assert_eq!(line(&lines, "outer only"), "outer: outer only");
    assert_eq!(line(&lines, "none"), "none");
    for i in 0..3 {
        let m = format!("b{i}");
        assert_eq!(line(&lines, &m), m);
    }
}

#[test]
fn the_main_greenlets_span_stays_with_it() {
    let lines = captured(|| {
        let _main = info_span!("main_span").entered();
        let g = hub::spawn(|| info!("worker"));
        g.join().unwrap(); // main parks; the worker runs
        info!("main again");
    });
    assert_eq!(line(&lines, "worker"), "worker");
    assert_eq!(line(&lines, "main again"), "main_span: main again");
}

#[test]
fn a_killed_or_panicking_greenlet_leaves_no_span_behind() {
    let lines = captured(|| {
        hub::run(|| {
            let victim = hub::spawn_instrumented(info_span!("victim"), || {
                let _g = info_span!("held").entered();
                hub::sleep(Duration::from_secs(60));
            });
            let panicker = hub::spawn_instrumented(info_span!("panicker"), || {
                let _g = info_span!("held2").entered();
                hub::yield_now();
                panic!("boom");
            });
            hub::yield_now();
            victim.kill();
            assert!(panicker.join().is_err());
            info!("after both");
            hub::spawn(|| info!("fresh greenlet")).join().unwrap();
        })
    });
    assert_eq!(line(&lines, "after both"), "after both");
    assert_eq!(line(&lines, "fresh greenlet"), "fresh greenlet");
}
