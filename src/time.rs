//! Time: sleeping, timeouts and a ticker, in one place (tokio's `tokio::time`).
//!
//! [`sleep`], [`sleep_until`] and [`timeout`] are the hub's own (re-exported from
//! [`crate::hub`] and [`crate::timeout`](mod@crate::timeout)); [`interval`] makes an [`Interval`], a ticker that
//! fires every `period` and says what happens to ticks it missed ([`MissedTickBehavior`]).
//!
//! ```
//! use std::time::Duration;
//! use greenhub::{hub, time};
//!
//! hub::run(|| {
//!     let mut every_ms = time::interval(Duration::from_millis(1));
//!     let start = every_ms.tick(); // the first tick is immediate
//!     for _ in 0..5 {
//!         every_ms.tick(); // parks this greenlet until the next millisecond boundary
//!     }
//!     assert!(start.elapsed() >= Duration::from_millis(5));
//! });
//! ```

#![deny(unsafe_code)]

use std::time::{Duration, Instant};

pub use crate::hub::{sleep, sleep_until};
pub use crate::timeout::{timeout, timeout_at, Elapsed, Timeout};

/// What an [`Interval`] does when a tick is late by a whole period or more (the greenlet was
/// busy, or the hub was): tokio's `MissedTickBehavior`, same names and meanings.
///
/// With a 10 ms period starting at t = 0, when the tick due at t = 0 is returned only at t = 35:
///
/// | behaviour | ticks returned after t = 35 are scheduled for |
/// | --- | --- |
/// | `Burst` (default) | 10, 20, 30 at once (catching up), then 40, 50, … |
/// | `Delay` | 45, 55, … (the schedule restarts from the late tick) |
/// | `Skip` | 40, 50, … (the missed ones are dropped, the grid kept) |
///
/// A tick that is late by less than a period is never "missed": the next keeps its schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Return the missed ticks as fast as they are asked for, until back on schedule.
    #[default]
    Burst,
    /// Schedule the next tick one period after the late one was returned.
    Delay,
    /// Drop the missed ticks; the next is the next multiple of the period after now.
    Skip,
}

/// A ticker: [`tick`](Interval::tick) parks the calling greenlet until the next multiple of the
/// period (tokio's `Interval`). Made by [`interval`] or [`interval_at`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, time::{interval, MissedTickBehavior}};
///
/// hub::run(|| {
///     let mut iv = interval(Duration::from_millis(2));
///     iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
///     iv.tick();
///     std::thread::sleep(Duration::from_millis(7)); // hold the hub: three ticks are missed
///     let t = iv.tick(); // late tick returned at once...
///     let next = iv.tick(); // ...then back on the 2 ms grid, the missed ones skipped
///     assert!(next - t >= Duration::from_millis(4));
/// });
/// ```
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    next: Instant,
    behavior: MissedTickBehavior,
}

/// A ticker whose first tick is now and then every `period` (tokio's `interval`).
///
/// # Panics
/// If `period` is zero.
///
/// # Examples
/// See [`Interval`].
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// A ticker whose first tick is at `start` and then every `period`.
///
/// # Panics
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now() + Duration::from_millis(3);
/// let mut iv = greenhub::time::interval_at(start, Duration::from_millis(1));
/// assert!(iv.tick() >= start);
/// ```
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "greenhub::time::interval: the period must be non-zero"
    );
    Interval {
        period,
        next: start,
        behavior: MissedTickBehavior::default(),
    }
}

impl Interval {
    /// Parks the calling greenlet until the next tick is due and returns the instant it was
    /// scheduled for (not the later moment it was returned at). A tick already due returns at
    /// once (after a yield, so other greenlets run).
    ///
    /// A kill unwinds from here. An enclosing timeout scope that expires makes it return early,
    /// at the scope's deadline, *without* consuming the tick (the next call waits for the same
    /// one); check the scope with [`Timeout::expired`].
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    pub fn tick(&mut self) -> Instant {
        let target = self.next;
        sleep_until(target);
        let now = Instant::now();
        if now < target {
            return now; // interrupted by a scope: not consumed
        }
        self.next = self.after(target, now);
        target
    }

    /// When the tick after one scheduled for `target`, returned at `now`, is due.
    fn after(&self, target: Instant, now: Instant) -> Instant {
        let on_schedule = target + self.period;
        if now < on_schedule {
            return on_schedule; // late by less than a period: not missed
        }
        match self.behavior {
            MissedTickBehavior::Burst => on_schedule,
            MissedTickBehavior::Delay => now + self.period,
            MissedTickBehavior::Skip => {
                let behind = (now - target).as_nanos() / self.period.as_nanos();
                let k = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                target + self.period.saturating_mul(k)
            }
        }
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.next = Instant::now() + self.period;
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How missed ticks are handled (default [`MissedTickBehavior::Burst`]).
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.behavior
    }

    /// Sets how missed ticks are handled.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.behavior = behavior;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_tick_schedules_match_the_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut iv = interval_at(t0, ms(10));
        let now = t0 + ms(35);
        assert_eq!(iv.after(t0, now), t0 + ms(10));
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        assert_eq!(iv.after(t0, now), now + ms(10));
        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        assert_eq!(iv.after(t0, now), t0 + ms(40));
        // Late by less than a period: on schedule whatever the behaviour.
        assert_eq!(iv.after(t0, t0 + ms(9)), t0 + ms(10));
    }
}
