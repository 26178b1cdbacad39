//! What a greenlet carries besides its stack: greenlet-local values (`greenlet_local!`,
//! `src/local.rs`) and its tracing span context. Both live in one lazily allocated box that the
//! control block points to, so a greenlet that uses neither costs one pointer (`Core::context`,
//! 8 bytes, `None`).
//!
//! # The switch hooks
//!
//! The hub calls exactly two functions on a switch, both in the hub context:
//!
//! - [`switched_out`] when greenlet X has switched to the hub (`Hub::entered_hub`): the spans X has
//!   entered are exited, innermost first, and remembered in X's context (outermost first);
//! - [`resuming`] just before the hub switches into X (`Hub::resume`): the remembered spans are
//!   entered again, outermost first.
//!
//! So the subscriber's per-thread stack of entered spans (tracing-subscriber's `Registry` keeps one
//! per OS thread) holds exactly the running greenlet's spans, and is empty while the hub runs: a
//! `Span::enter` guard held across a blocking point does not leak into the greenlets that run
//! meanwhile, and an event the hub itself logs is in no greenlet's span. A span given with
//! `Builder::span` is simply the first entry of the greenlet's saved stack: entered at its first
//! resume, and from then on exited and re-entered with the rest.
//!
//! Both hooks start with `tracing::dispatcher::has_been_set()`, one relaxed atomic load that stays
//! false until some subscriber is installed (globally or with `set_default`/`with_default`); until
//! then a switch pays nothing more. With a subscriber, a switch-out asks it for the current span
//! (`Span::current()`), which for an empty stack allocates nothing; a resume reads the context
//! pointer.
//!
//! The span walk relies on the subscriber tracking the current span (`Subscriber::current_span`)
//! and popping it on `exit`, as the `Registry` does. With a subscriber that does not track it,
//! `Span::current()` is always empty and nothing is saved (spans then behave as they would on one
//! thread without greenhub). The walk stops after [`MAX_SPANS`] spans, so a subscriber whose
//! `exit` does not pop cannot make it loop.
//!
//! # When values are dropped
//!
//! `drop_locals` drops the greenlet-local values when a worker's closure has returned, panicked or
//! unwound from a kill: on the worker's own stack, before its joiners are woken, inside its span.
//! [`finish_main`] does the same for the main greenlet when the hub is torn down (on the thread's
//! own stack, in the hub's thread-local destructor). A greenlet abandoned at teardown (it refused
//! to die) has its values dropped with its control block, on whatever stack drops the last
//! reference to it.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use tracing::Span;

use super::task::{panic_message, Core, KillSignal, State};

/// At most this many entered spans are saved per switch (a bound for subscribers whose `exit`
/// does not pop the current span).
pub(crate) const MAX_SPANS: usize = 64;

/// The one field a greenlet's control block spends on its context: `None` until first needed.
#[derive(Default)]
pub(crate) struct Slot(Cell<Option<Box<Context>>>);

/// A greenlet's context, allocated on first use.
#[derive(Default)]
pub(crate) struct Context {
    /// Greenlet-local values by key index (`LocalKey::index`). `Rc` so an access can hand out a
    /// reference without keeping the box borrowed (the closure may block, or use other locals).
    pub(crate) locals: Vec<Option<Rc<dyn Any>>>,
    /// The values were dropped (the greenlet finished): a late access gets `AccessError`.
    pub(crate) destroyed: bool,
    /// The spans to enter when the greenlet is resumed, outermost first. While it runs, the same
    /// handles (kept so every span stays open while entered, whatever the subscriber counts).
    spans: Vec<Span>,
}

impl Slot {
    /// Runs `f` on the context, allocating it if `create` and it does not exist yet. The box is
    /// out of the cell while `f` runs: `f` must not switch, call back into this slot or run user code
    /// (move values out and drop them after).
    #[inline]
    pub(crate) fn with<R>(&self, create: bool, f: impl FnOnce(&mut Context) -> R) -> Option<R> {
        let mut b = match self.0.take() {
            Some(b) => b,
            None if create => Box::default(),
            None => return None,
        };
        let r = f(&mut b);
        self.0.set(Some(b));
        Some(r)
    }
}

/// Gives the greenlet its span (`Builder::span`): entered at its first resume. Before it starts.
pub(crate) fn set_span(core: &Core, span: Span) {
    if span.is_disabled() {
        return; // no subscriber wants it (or none is installed): nothing to enter, no box
    }
    core.context_with(true, |c| c.spans = vec![span]);
}

/// Switch hook: greenlet `core` has just switched to the hub (or finished). Hub context.
#[inline(always)]
pub(crate) fn switched_out(core: &Core) {
    if tracing::dispatcher::has_been_set() {
        save_spans(core);
    }
}

/// Switch hook: the hub is about to switch into `core`. Hub context.
#[inline(always)]
pub(crate) fn resuming(core: &Core) {
    if tracing::dispatcher::has_been_set() {
        restore_spans(core);
    }
}

/// Exits every span the greenlet has entered, innermost first, and keeps them for its resume.
#[inline(never)]
fn save_spans(core: &Core) {
    let first = Span::current();
    let finished = core.state() == State::Finished;
    if first.is_none() && !finished {
        // Nothing entered now: forget what was entered at the last resume (the handles of spans
        // the greenlet has exited since).
        let old = core.context_with(false, |c| std::mem::take(&mut c.spans));
        drop(old); // outside the box: a span's close may run subscriber code
        return;
    }
    let mut saved = Vec::new();
    let mut cur = first;
    while !cur.is_none() && saved.len() < MAX_SPANS {
        cur.with_subscriber(|(id, dispatch)| dispatch.exit(id));
        saved.push(cur);
        cur = Span::current();
    }
    if finished {
        // Its spans were exited; nothing will re-enter them. Drop our handles (the subscriber
        // may close the spans now).
        let old = core.context_with(false, |c| std::mem::take(&mut c.spans));
        drop((saved, old));
        return;
    }
    saved.reverse();
    let old = core.context_with(true, |c| std::mem::replace(&mut c.spans, saved));
    drop(old);
}

/// Enters the greenlet's saved spans again, outermost first.
#[inline(never)]
fn restore_spans(core: &Core) {
    // Out of the box while the subscriber runs, then back (the handles stay alive while entered).
    let Some(spans) = core.context_with(false, |c| std::mem::take(&mut c.spans)) else {
        return;
    };
    for s in &spans {
        s.with_subscriber(|(id, dispatch)| dispatch.enter(id));
    }
    core.context_with(false, |c| c.spans = spans);
}

/// Drop hook of the main greenlet at hub teardown. A destructor panic is reported, not raised (we
/// are in a thread-local destructor).
pub(crate) fn finish_main(core: &Core) {
    if let Some(p) = drop_locals(core) {
        if !p.is::<KillSignal>() {
            tracing::error!(
                "greenhub: a greenlet-local value of {} panicked in its destructor: {}",
                core.describe(),
                panic_message(&*p)
            );
        }
    }
}

/// Drop hook of a worker (called by `TaskCell::run` once its closure has returned, panicked or
/// unwound from a kill, on its own stack, before its joiners are woken), and of the main
/// greenlet: takes the values out (marking the context destroyed) and drops them; returns the
/// payload of the first destructor panic.
#[inline]
pub(crate) fn drop_locals(core: &Core) -> Option<Box<dyn Any + Send>> {
    let values = core.context_with(false, |c| {
        c.destroyed = true;
        std::mem::take(&mut c.locals)
    })?;
    if values.is_empty() {
        return None;
    }
    drop_values(values)
}

#[cold]
#[inline(never)]
fn drop_values(values: Vec<Option<Rc<dyn Any>>>) -> Option<Box<dyn Any + Send>> {
    panic::catch_unwind(AssertUnwindSafe(move || drop(values))).err()
}
