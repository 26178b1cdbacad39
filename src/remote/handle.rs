//! [`Handle`]: a `Send + Sync` handle to a hub, through which other threads spawn greenlets on it
//! ([`RemoteGreenlet`] joins them from anywhere) and run callbacks on its stack.
//!
//! A job sent through a handle is a message in the hub's mailbox (`rt/mailbox.rs`): pushed under
//! a lock, the hub woken through its `mio::Waker` only when a compare-and-swap flips its
//! `notified` flag (a burst of pushes costs one wake-up). After the hub is torn down its mailbox
//! refuses messages: a dropped job reports its greenlet as killed.

#![deny(unsafe_code)]

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::blocker::{Blocker, Notifier};
use crate::greenlet::{Builder, GreenletError};
use crate::rt::{current_hub, existing_hub, Job, KillSignal, Msg, Shared, Wake};

/// A `Send + Sync` handle to a hub, for other threads: spawn greenlets on it.
///
/// Get one with [`handle`] on the hub's thread. Jobs sent through it wake the hub through its
/// `mio::Waker`, coalesced: a burst of spawns costs about one wake-up. After the hub is torn down
/// (its thread exited) a spawn still returns a join handle, which reports
/// [`GreenletError::Killed`].
///
/// ```
/// use greenhub::{hub, sync::mpmc};
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// let (stop_tx, stop_rx) = mpmc::bounded::<()>(1);
/// let t = std::thread::spawn(move || {
///     hub::run(move || {
///         tx.send(hub::handle()).unwrap();
///         let _ = stop_rx.recv(); // keep the hub alive until `stop_tx` is dropped
///     })
/// });
/// let h = rx.recv().unwrap();
/// let g = h.spawn(|| 6 * 7);
/// assert_eq!(g.join().unwrap(), 42); // blocks this thread only
/// drop(stop_tx);
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A [`Handle`] to this thread's hub (created on first use).
///
/// # Panics
/// After this thread's hub was torn down.
#[track_caller]
pub fn handle() -> Handle {
    Handle {
        shared: current_hub().mailbox().shared().clone(),
    }
}

impl Handle {
    /// Spawns a greenlet running `f` on the handle's hub; returns a join handle usable from any
    /// thread or hub.
    pub fn spawn<F, T>(&self, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(None, f)
    }

    /// Like [`spawn`](Self::spawn), naming the greenlet (the name shows in diagnostics, the
    /// monitor's reports and `hub::run_info`).
    pub fn spawn_named<F, T>(&self, name: impl Into<String>, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(Some(name.into()), f)
    }

    fn spawn_inner<F, T>(&self, name: Option<String>, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(JoinSlot {
            state: Mutex::new(JoinState {
                result: None,
                taken: false,
                waiters: Vec::new(),
            }),
        });
        let completer = Completer {
            slot: Some(slot.clone()),
        };
        let job: Job = Box::new(move || {
            // Hub context: spawn the greenlet, which starts at the next loop iteration.
            let builder = match name {
                Some(n) => Builder::new().name(n),
                None => Builder::new(),
            };
            let g = builder.spawn(move || {
                /// Forgets the greenlet's entry however it ends.
                struct Forget(u64);
                impl Drop for Forget {
                    fn drop(&mut self) {
                        if let Some(hub) = existing_hub() {
                            drop(hub.mailbox().forget(self.0));
                        }
                    }
                }
                let _forget = Forget(id);
                let completer = completer;
                match panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(v) => completer.complete(Ok(v)),
                    Err(p) if p.is::<KillSignal>() => {
                        completer.complete(Err(GreenletError::Killed));
                        panic::resume_unwind(p);
                    }
                    Err(p) => completer.complete(Err(GreenletError::Panicked(p))),
                }
            });
            if let Some(hub) = existing_hub() {
                hub.mailbox().remember(id, g.as_task());
            }
        });
        // Refused (the hub is gone): dropping the job drops the completer, which reports Killed.
        drop(self.shared.push(Msg::Run(job)));
        RemoteGreenlet {
            slot,
            id,
            hub: self.shared.clone(),
        }
    }

    /// Runs `f` on the hub's own stack at its next loop iteration (like [`run_callback`](crate::hub::run_callback),
    /// from any thread). `f` must not block. Returns `false` if the hub is gone (`f` is dropped).
    pub fn run_callback<F>(&self, f: F) -> bool
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.push(Msg::Run(Box::new(f))).is_ok()
    }

    /// Whether the hub has been torn down (its thread exited): spawns are refused from then on.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// How many times other threads have woken this hub's poller (`mio::Waker::wake` calls).
    /// Bursts are coalesced, so this grows much slower than the number of jobs sent.
    pub fn wakeups(&self) -> u64 {
        self.shared.wakeups()
    }

    /// Whether both handles name the same hub.
    pub fn same_hub(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

struct JoinSlot<T> {
    state: Mutex<JoinState<T>>,
}

struct JoinState<T> {
    result: Option<Result<T, GreenletError>>,
    taken: bool,
    waiters: Vec<(u64, Notifier)>,
}

impl<T> JoinSlot<T> {
    fn lock(&self) -> MutexGuard<'_, JoinState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reports a remote greenlet's outcome; reports `Killed` if dropped before that (the job was never
/// run, or the greenlet was killed before it started).
struct Completer<T> {
    slot: Option<Arc<JoinSlot<T>>>,
}

impl<T> Completer<T> {
    fn complete(mut self, r: Result<T, GreenletError>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, r);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, Err(GreenletError::Killed));
        }
    }
}

fn finish<T>(slot: &JoinSlot<T>, r: Result<T, GreenletError>) {
    let waiters = {
        let mut st = slot.lock();
        st.result = Some(r);
        std::mem::take(&mut st.waiters)
    };
    for (_, n) in waiters {
        n.notify();
    }
}

static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);

/// The join handle of a greenlet spawned through a [`Handle`]: `Send`, joinable from a greenlet on
/// any hub (parks only that greenlet) or from a plain thread (blocks it). Dropping it detaches the
/// greenlet.
pub struct RemoteGreenlet<T> {
    slot: Arc<JoinSlot<T>>,
    /// Key in the hub's `HubRemote::spawned`.
    id: u64,
    hub: Arc<Shared>,
}

impl<T> fmt::Debug for RemoteGreenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteGreenlet")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> RemoteGreenlet<T> {
    /// Whether the greenlet has finished (returned, panicked, or was killed or never run).
    pub fn is_finished(&self) -> bool {
        let st = self.slot.lock();
        st.result.is_some() || st.taken
    }

    /// Asks the greenlet's hub to kill it (gevent's `kill(block=False)`) and returns at once;
    /// [`join`](Self::join) then waits for it to finish unwinding and reports
    /// [`GreenletError::Killed`] (unless it finished first). A greenlet not yet started is
    /// dropped without running.
    pub fn kill(&self) {
        let id = self.id;
        let _ = self.hub.push(Msg::Run(Box::new(move || {
            if let Some(hub) = existing_hub() {
                if let Some(task) = hub.mailbox().forget(id) {
                    hub.request_kill(&task);
                }
            }
        })));
    }

    /// Waits until the greenlet finishes; returns its value.
    ///
    /// # Errors
    /// [`GreenletError::Panicked`] with the payload, [`GreenletError::Killed`] if it was killed
    /// (its hub shut down), [`GreenletError::TimedOut`] if an enclosing timeout scope of the
    /// joining greenlet expires first.
    ///
    /// # Panics
    /// Inside a hub callback.
    #[track_caller]
    pub fn join(self) -> Result<T, GreenletError> {
        self.wait(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`GreenletError::TimedOut`]; the
    /// handle stays joinable.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    ///
    /// # Panics
    /// As [`join`](Self::join), and if the result was already taken.
    #[track_caller]
    pub fn join_timeout(&self, timeout: Duration) -> Result<T, GreenletError> {
        self.wait(Instant::now().checked_add(timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<T, GreenletError> {
        let me = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
        let mut blocker: Option<Blocker> = None;
        loop {
            {
                let mut st = self.slot.lock();
                if let Some(r) = st.result.take() {
                    st.taken = true;
                    return r;
                }
                assert!(
                    !st.taken,
                    "greenhub: the result of this remote greenlet was already taken"
                );
                let b = blocker.get_or_insert_with(Blocker::new);
                st.waiters.retain(|(id, _)| *id != me);
                st.waiters.push((me, b.notifier()));
            }
            let b = blocker.as_ref().expect("made above");
            let wake = b.park(&"a greenlet on another hub to finish", deadline);
            let give_up = match wake {
                Wake::Woken => None,
                Wake::TimedOut | Wake::ScopeExpired => Some(GreenletError::TimedOut),
                Wake::Killed | Wake::Deadlock => Some(GreenletError::Killed),
            };
            if let Some(e) = give_up {
                let mut st = self.slot.lock();
                if let Some(r) = st.result.take() {
                    st.taken = true;
                    return r;
                }
                st.waiters.retain(|(id, _)| *id != me);
                return Err(e);
            }
        }
    }
}
