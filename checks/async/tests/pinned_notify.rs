//! A pinned intrusive node (tokio's `Notify::notified()`) on an exclusive greenlet's stack is
//! written by a notifier while the greenlet is parked and others run: sound only because the
//! greenlet's stack region is never shared (`hub::Builder::exclusive_stack`).

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use greenhub::hub;
use support::{stack_churners, with_max_stacks};

#[path = "../../../tests/support/mod.rs"]
mod support;

/// A waker that counts its wakes; no runtime needed.
struct Flag(AtomicBool);
impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn a_pinned_intrusive_node_on_an_exclusive_stack_is_written_safely_while_parked() {
    with_max_stacks(1, || {
        hub::run(|| {
            let notify = Rc::new(tokio::sync::Notify::new());
            let ok = Rc::new(Cell::new(true));
            let waiter = {
                let notify = notify.clone();
                hub::Builder::new().exclusive_stack().spawn(move || {
                    let flag = Arc::new(Flag(AtomicBool::new(false)));
                    let waker = Waker::from(flag.clone());
                    let mut cx = Context::from_waker(&waker);
                    // The node lives in this frame, pinned on the greenlet's stack.
                    let mut notified = pin!(notify.notified());
                    assert!(notified.as_mut().poll(&mut cx).is_pending());
                    // Parked: others run, and the notifier writes into the node meanwhile.
                    while !flag.0.load(Ordering::Acquire) {
                        hub::sleep(Duration::from_millis(1));
                    }
                    notified.as_mut().poll(&mut cx).is_ready()
                })
            };
            let churners = stack_churners(4, 500, &ok);
            let notifier = {
                let notify = notify.clone();
                hub::spawn(move || {
                    hub::sleep(Duration::from_millis(5));
                    notify.notify_waiters();
                })
            };
            assert!(waiter.join().unwrap(), "the notified future was not ready");
            notifier.join().unwrap();
            for c in churners {
                c.join().unwrap();
            }
            assert!(
                ok.get(),
                "the notifier's write landed in another greenlet's stack"
            );
        });
    });
}
