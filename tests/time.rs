//! time::interval: ticks on schedule and the three missed-tick behaviours, on a real hub.

use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::time::{interval, interval_at, MissedTickBehavior};

const MS: Duration = Duration::from_millis(1);

#[test]
fn ticks_keep_their_schedule_and_park_only_the_ticker() {
    hub::run(|| {
        let other = hub::spawn(|| {
            let mut n = 0u64;
            let t0 = Instant::now();
            while t0.elapsed() < 45 * MS {
                n += 1;
                hub::yield_now();
            }
            n
        });
        let t0 = Instant::now();
        let mut iv = interval(5 * MS);
        let first = iv.tick();
        assert!(
            first <= Instant::now() && first >= t0,
            "the first tick is immediate"
        );
        for k in 1..=10u32 {
            let at = iv.tick();
            assert_eq!(
                at,
                first + 5 * MS * k,
                "tick {k} was scheduled off the grid"
            );
            assert!(Instant::now() >= at);
        }
        assert!(t0.elapsed() >= 50 * MS);
        assert!(
            other.join().unwrap() > 100,
            "the other greenlet ran while the ticker parked"
        );
    });
}

/// Holds the hub for 35 ms after the first tick of a 10 ms interval, then reports the scheduled
/// instants of the next three ticks relative to the first.
fn after_a_35ms_stall(b: MissedTickBehavior) -> Vec<Duration> {
    hub::run(move || {
        let start = Instant::now() + 2 * MS;
        let mut iv = interval_at(start, 10 * MS);
        iv.set_missed_tick_behavior(b);
        let first = iv.tick();
        std::thread::sleep(35 * MS); // the greenlet (and the hub) is busy: ticks are missed
        (0..3).map(|_| iv.tick().duration_since(first)).collect()
    })
}

#[test]
fn burst_catches_up_on_missed_ticks() {
    let v = after_a_35ms_stall(MissedTickBehavior::Burst);
    assert_eq!(v, vec![10 * MS, 20 * MS, 30 * MS]);
}

#[test]
fn skip_drops_missed_ticks_and_keeps_the_grid() {
    let v = after_a_35ms_stall(MissedTickBehavior::Skip);
    // The late tick (due at 10) is returned, then the grid resumes after "now" (~35).
    assert_eq!(v[0], 10 * MS);
    assert!(
        v[1] >= 40 * MS && v[1].as_nanos() % (10 * MS).as_nanos() == 0,
        "{v:?}"
    );
    // On schedule again, unless this loaded machine made that tick late too (then skipped on).
    let d = v[2] - v[1];
    assert!(
        d >= 10 * MS && d.as_nanos() % (10 * MS).as_nanos() == 0,
        "{v:?}"
    );
}

#[test]
fn delay_restarts_the_schedule_from_the_late_tick() {
    let v = after_a_35ms_stall(MissedTickBehavior::Delay);
    assert_eq!(v[0], 10 * MS);
    assert!(v[1] >= 45 * MS, "{v:?}");
    // One period on, or more if this loaded machine made that tick late too.
    assert!(v[2] - v[1] >= 10 * MS, "{v:?}");
}

#[test]
#[should_panic(expected = "period must be non-zero")]
fn a_zero_period_panics() {
    let _ = interval(Duration::ZERO);
}
