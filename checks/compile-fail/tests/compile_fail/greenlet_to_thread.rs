// A Greenlet belongs to the hub that spawned it: its handle cannot cross to another thread.
use greenhub::hub;

fn main() {
    let g = hub::spawn(|| 1);
    std::thread::spawn(move || g.join());
}
