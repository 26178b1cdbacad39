//! The blocked-hub monitor and `hub::run_info`.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use greenhub::hub::{self, GreenletState};

/// Everything tracing writes in this test binary, from any thread.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Buffer {
    static BUF: OnceLock<Buffer> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Buffer::default();
        let writer = buf.clone();
        // The monitor reports from its own thread: the subscriber must be global.
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buf
    })
}

fn text() -> String {
    String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned()
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn the_monitor_reports_a_greenlet_that_spins_300ms() {
    captured();
    // A fresh thread so that its hub is configured from the start.
    thread::spawn(|| {
        hub::Config::new()
            .monitor(Duration::from_millis(100))
            .install()
            .unwrap();
        hub::run(|| {
            let g = hub::Builder::new()
                .name("spinner")
                .spawn(|| spin(Duration::from_millis(300)));
            let polite = hub::Builder::new().name("polite").spawn(|| {
                for _ in 0..30 {
                    hub::sleep(Duration::from_millis(10)); // never holds the hub long
                }
            });
            g.join().unwrap();
            polite.join().unwrap();
            // Idle in epoll for a while: the hub's own loop is never reported.
            hub::sleep(Duration::from_millis(300));
        });
    })
    .join()
    .unwrap();
    let out = text();
    let reports: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("greenhub monitor"))
        .collect();
    assert_eq!(reports.len(), 1, "expected one report, got: {out}");
    assert!(reports[0].contains("(spinner)"), "{}", reports[0]);
    assert!(reports[0].contains("greenlet.name=\"spinner\"") || reports[0].contains("spinner"));
    assert!(!out.contains("(polite)"));
}

#[test]
fn run_info_lists_every_greenlet_with_what_it_waits_on() {
    thread::spawn(|| {
        hub::run(|| {
            let sleeper = hub::Builder::new()
                .name("sleeper")
                .spawn(|| hub::sleep(Duration::from_secs(60)));
            let fresh = hub::spawn(|| ());
            hub::yield_now(); // the sleeper parks; `fresh` has run
            let late = hub::Builder::new().name("late").spawn(|| ());
            let info = hub::run_info();
            let me = greenhub::greenlet::current_id();
            let find = |id| info.iter().find(|i| i.id == id).expect("listed");
            assert!(info.iter().any(|i| i.is_main));
            assert_eq!(find(me).state, GreenletState::Running);
            let s = find(sleeper.id());
            assert_eq!(s.name.as_deref(), Some("sleeper"));
            assert_eq!(s.state, GreenletState::Parked);
            assert_eq!(s.parked_on.as_deref(), Some("a sleep"));
            assert!(fresh.is_finished());
            assert!(
                !info.iter().any(|i| i.id == fresh.id()),
                "finished greenlets are not listed"
            );
            assert_eq!(find(late.id()).state, GreenletState::NotStarted);
            let main = info.iter().find(|i| i.is_main).unwrap();
            assert_eq!(main.state, GreenletState::Parked);
            assert_eq!(
                main.parked_on.as_deref(),
                Some(format!("greenlet {me} to finish").as_str())
            );
            sleeper.kill();
        })
    })
    .join()
    .unwrap();
}
