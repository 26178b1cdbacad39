//! The main thread at process exit never resumes a greenlet (issue 11, item 1): the same scenario
//! as `tests/thread_exit.rs`, on the real main thread, whose thread-locals are destroyed by
//! `exit` after `main` returns. Its own `main` (`harness = false`): the parent re-runs this binary
//! as the child, which parks a greenlet inside a thread-local's `with` and returns from `main`.
//! Before the fix the exit-time teardown resumed the greenlet into the freed thread-local.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use greenhub::hub;
use greenhub::sync::Queue;

const CHILD_ENV: &str = "GREENHUB_EXIT_MAIN_CHILD";

static Q_GONE: AtomicBool = AtomicBool::new(false);

struct Tracked(Queue<u32>);

impl Drop for Tracked {
    fn drop(&mut self) {
        Q_GONE.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    static Q: Tracked = Tracked(Queue::new());
}

struct OnStack;

impl Drop for OnStack {
    fn drop(&mut self) {
        if Q_GONE.load(Ordering::SeqCst) {
            eprintln!("RESUMED AFTER Q WAS DESTROYED");
        }
    }
}

fn child() {
    hub::yield_now(); // the hub and its teardown guard first, then Q
    Q.with(|_| ());
    hub::Builder::new().name("main-borrows-Q").spawn(|| {
        let _s = OnStack;
        Q.with(|q| q.0.get().ok())
    });
    hub::sleep(Duration::from_millis(5));
    // Returning from main: exit() destroys Q, then the hub's guard runs.
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("GREENHUB_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    let mut cmd = match parts.next() {
        Some(p) => {
            let mut c = Command::new(p);
            c.args(parts).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = cmd
        .env(CHILD_ENV, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the child hung at process exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "child died: {status:?}\n{err}");
    assert!(
        !err.contains("RESUMED AFTER"),
        "a greenlet ran after its thread-local was destroyed:\n{err}"
    );
    assert!(
        err.contains("abandoned") && err.contains("(main-borrows-Q)"),
        "no abandonment warning on stderr:\n{err}"
    );
    println!("exit_main_thread: ok");
}
