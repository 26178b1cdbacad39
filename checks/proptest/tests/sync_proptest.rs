//! Random programs of spawn, kill, sleep, queue put/get, semaphore acquire/release, event set/wait
//! and timeout scopes, run under `hub::run`. Checked afterwards: every greenlet ended (and none
//! panicked), no item was lost or duplicated, permits are conserved, every destructor ran.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use greenhub::sync::{Event, Queue, Semaphore};
use greenhub::timeout::timeout;
use greenhub::{hub, Greenlet, GreenletError};

const PERMITS: usize = 1;
const SCRIPTS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    Sleep(u8),
    Yield,
    /// `then_kill`: a `KillSome` right after, before anybody else runs (the item may just have
    /// been handed to a getter that now dies before taking it).
    Put {
        timeout_ms: Option<u8>,
        then_kill: Option<u8>,
    },
    Get {
        timeout_ms: Option<u8>,
    },
    Acquire {
        timeout_ms: Option<u8>,
    },
    /// `then_kill` as for `Put`.
    Release {
        then_kill: Option<u8>,
    },
    Set,
    Clear,
    Wait {
        timeout_ms: Option<u8>,
    },
    Spawn(u8),
    Kill(u8),
    /// Requests the kill of every greenlet whose index has its bit set (mod 8) in the mask, without
    /// waiting: those just handed a permit or item die before they can take it.
    KillSome(u8),
    Scope {
        ms: u8,
        ops: Vec<Op>,
    },
}

fn leaf() -> impl Strategy<Value = Op> {
    let t = proptest::option::of(0u8..4);
    prop_oneof![
        (0u8..4).prop_map(Op::Sleep),
        Just(Op::Yield),
        (t.clone(), proptest::option::of(any::<u8>())).prop_map(|(timeout_ms, then_kill)| {
            Op::Put {
                timeout_ms,
                then_kill,
            }
        }),
        t.clone().prop_map(|timeout_ms| Op::Get { timeout_ms }),
        t.clone().prop_map(|timeout_ms| Op::Acquire { timeout_ms }),
        proptest::option::of(any::<u8>()).prop_map(|then_kill| Op::Release { then_kill }),
        Just(Op::Set),
        Just(Op::Clear),
        t.prop_map(|timeout_ms| Op::Wait { timeout_ms }),
        any::<u8>().prop_map(Op::Spawn),
        any::<u8>().prop_map(Op::Kill),
        any::<u8>().prop_map(Op::Kill),
        any::<u8>().prop_map(Op::KillSome),
        any::<u8>().prop_map(Op::KillSome),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => leaf(),
        1 => (1u8..6, proptest::collection::vec(leaf(), 0..6))
            .prop_map(|(ms, ops)| Op::Scope { ms, ops }),
    ]
}

fn program() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 0..12), SCRIPTS)
}

/// Counts drops per id (items) or in total (greenlet-local guards).
struct Item {
    id: u64,
    world: Rc<World>,
}

impl Drop for Item {
    fn drop(&mut self) {
        *self
            .world
            .item_drops
            .borrow_mut()
            .entry(self.id)
            .or_insert(0) += 1;
    }
}

struct Local(Rc<World>);

/// Permits a greenlet holds; released by the destructor (also when the greenlet is killed).
struct Permits {
    w: Rc<World>,
    n: usize,
}

impl Drop for Permits {
    fn drop(&mut self) {
        for _ in 0..self.n {
            self.w.held.set(self.w.held.get() - 1);
            self.w.sem.release();
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.0.locals_dropped.set(self.0.locals_dropped.get() + 1);
    }
}

#[derive(Default)]
struct World {
    queue: Queue<Item>,
    sem: Semaphore,
    event: Event,
    program: Vec<Vec<Op>>,
    greenlets: RefCell<Vec<Option<Greenlet<()>>>>,
    next_item: Cell<u64>,
    /// Ids whose put returned Ok.
    put_ok: RefCell<Vec<u64>>,
    /// Ids a get returned.
    received: RefCell<Vec<u64>>,
    item_drops: RefCell<HashMap<u64, u32>>,
    locals_made: Cell<u64>,
    locals_dropped: Cell<u64>,
    held: Cell<usize>,
    max_held: Cell<usize>,
}

fn ms(v: u8) -> Duration {
    Duration::from_millis(u64::from(v))
}

fn run_script(w: &Rc<World>, me: usize, ops: &[Op], permits: &mut Permits) {
    for op in ops {
        run_op(w, me, op, permits);
    }
}

fn run_op(w: &Rc<World>, me: usize, op: &Op, permits: &mut Permits) {
    match op {
        Op::Sleep(v) => hub::sleep(ms(*v)),
        Op::Yield => hub::yield_now(),
        Op::Put {
            timeout_ms,
            then_kill,
        } => {
            let id = w.next_item.get();
            w.next_item.set(id + 1);
            let item = Item {
                id,
                world: w.clone(),
            };
            let r = match timeout_ms {
                Some(t) => w.queue.put_timeout(item, ms(*t)),
                None => w.queue.put(item),
            };
            if r.is_ok() {
                w.put_ok.borrow_mut().push(id);
            }
            if let Some(mask) = then_kill {
                kill_some(w, *mask);
            }
        }
        Op::Get { timeout_ms } => {
            let r = match timeout_ms {
                Some(t) => w.queue.get_timeout(ms(*t)),
                None => w.queue.get(),
            };
            if let Ok(item) = r {
                w.received.borrow_mut().push(item.id);
            }
        }
        Op::Acquire { timeout_ms } => {
            let ok = match timeout_ms {
                Some(t) => w.sem.acquire_timeout(ms(*t)),
                None => w.sem.acquire().is_ok(),
            };
            if ok {
                w.held.set(w.held.get() + 1);
                w.max_held.set(w.max_held.get().max(w.held.get()));
                permits.n += 1;
            }
        }
        Op::Release { then_kill } => {
            if permits.n > 0 {
                permits.n -= 1;
                w.held.set(w.held.get() - 1);
                w.sem.release();
            }
            if let Some(mask) = then_kill {
                kill_some(w, *mask);
            }
        }
        Op::Set => w.event.set(),
        Op::Clear => w.event.clear(),
        Op::Wait { timeout_ms } => {
            let ok = match timeout_ms {
                Some(t) => w.event.wait_timeout(ms(*t)),
                None => w.event.wait().is_ok(),
            };
            let _ = ok;
        }
        Op::Spawn(k) => {
            // Only scripts after ours, so programs are finite.
            let left = SCRIPTS - me - 1;
            if left > 0 && w.greenlets.borrow().len() < 64 {
                let target = me + 1 + usize::from(*k) % left;
                spawn_script(w, target);
            }
        }
        Op::Kill(k) => {
            let n = w.greenlets.borrow().len();
            if n > 0 {
                let i = usize::from(*k) % n;
                // Take the handle out so no borrow is held while `kill` parks.
                let g = w.greenlets.borrow_mut()[i].take();
                if let Some(g) = g {
                    if g.id() == greenhub::greenlet::current_id() {
                        // A self-kill unwinds at once: put the handle back first.
                        w.greenlets.borrow_mut()[i] = Some(g);
                        let gs = w.greenlets.borrow();
                        gs[i].as_ref().unwrap().kill_nowait();
                    } else {
                        g.kill();
                        w.greenlets.borrow_mut()[i] = Some(g);
                    }
                }
            }
        }
        Op::KillSome(mask) => kill_some(w, *mask),
        Op::Scope { ms: d, ops } => {
            let _ = timeout(ms(*d), || run_script(w, me, ops, permits));
        }
    }
}

fn kill_some(w: &World, mask: u8) {
    let me = greenhub::greenlet::current_id();
    for (i, g) in w.greenlets.borrow().iter().enumerate() {
        if let Some(g) = g
            .as_ref()
            .filter(|g| mask & (1 << (i % 8)) != 0 && g.id() != me)
        {
            g.kill_nowait();
        }
    }
}

fn spawn_script(w: &Rc<World>, script: usize) {
    let w2 = w.clone();
    let g = hub::spawn(move || {
        let local = Local(w2.clone());
        w2.locals_made.set(w2.locals_made.get() + 1);
        let mut permits = Permits {
            w: w2.clone(),
            n: 0,
        };
        let ops = w2.program[script].clone();
        run_script(&w2, script, &ops, &mut permits);
        drop(permits);
        drop(local);
    });
    w.greenlets.borrow_mut().push(Some(g));
}

fn check(program: Vec<Vec<Op>>) -> Result<(), TestCaseError> {
    let w = Rc::new(World {
        queue: Queue::bounded(2),
        sem: Semaphore::new(PERMITS),
        program,
        ..World::default()
    });
    let w2 = w.clone();
    hub::run(move || {
        let w = w2;
        for script in 0..SCRIPTS {
            spawn_script(&w, script);
        }
        // Every wait in the program is bounded except untimed get/put/acquire/wait, which may
        // block for ever: give the program time to settle, then kill what is left.
        let mut rounds = 0;
        loop {
            let all_done = w
                .greenlets
                .borrow()
                .iter()
                .all(|g| g.as_ref().is_none_or(|g| g.is_finished()));
            if all_done || rounds > 50 {
                break;
            }
            hub::sleep(Duration::from_millis(2));
            rounds += 1;
        }
        loop {
            let g = w
                .greenlets
                .borrow_mut()
                .iter_mut()
                .find_map(|g| g.take_if(|g| !g.is_finished()));
            let Some(g) = g else { break };
            g.kill();
            w.greenlets.borrow_mut().push(Some(g));
        }
    });
    // Every greenlet ended, none panicked.
    let gs: Vec<_> = w.greenlets.borrow_mut().drain(..).flatten().collect();
    for g in gs {
        prop_assert!(g.is_finished());
        match g.join() {
            Ok(()) | Err(GreenletError::Killed) => {}
            Err(e) => return Err(TestCaseError::fail(format!("a greenlet failed: {e}"))),
        }
    }
    // Permits conserved.
    prop_assert_eq!(w.held.get(), 0);
    prop_assert!(w.max_held.get() <= PERMITS);
    prop_assert_eq!(w.sem.available(), PERMITS);
    prop_assert_eq!(w.sem.waiters(), 0);
    // Items: each delivered at most once, none lost.
    let mut remaining = Vec::new();
    while let Some(item) = w.queue.try_get() {
        remaining.push(item.id);
    }
    let mut seen = w.received.borrow().clone();
    seen.extend(&remaining);
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    prop_assert_eq!(before, seen.len(), "an item was delivered twice");
    for id in w.put_ok.borrow().iter() {
        prop_assert!(seen.binary_search(id).is_ok(), "item {} was lost", id);
    }
    prop_assert_eq!(w.queue.getters() + w.queue.putters(), 0);
    prop_assert_eq!(w.event.waiters(), 0);
    // Every destructor ran exactly once.
    let made = w.next_item.get();
    let drops = w.item_drops.borrow();
    for id in 0..made {
        prop_assert_eq!(drops.get(&id).copied(), Some(1), "item {} drops", id);
    }
    prop_assert_eq!(w.locals_made.get(), w.locals_dropped.get());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 80,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_programs_keep_the_invariants(program in program()) {
        check(program)?;
    }
}
