//! A first look: greenlets sleeping, yielding and handing results back.
use std::time::{Duration, Instant};

use greenhub::hub;

fn main() {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    let t0 = Instant::now();
    let sum = hub::run(|| {
        let gs: Vec<_> = (0..1000u64)
            .map(|i| {
                hub::spawn(move || {
                    hub::sleep(Duration::from_millis(i % 50));
                    i
                })
            })
            .collect();
        gs.into_iter().map(|g| g.join().unwrap()).sum::<u64>()
    });
    println!("sum={sum} in {:?}; stats {:?}", t0.elapsed(), hub::stats());
}
