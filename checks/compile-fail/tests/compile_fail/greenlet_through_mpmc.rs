// A cross-thread channel of Greenlets is itself not Send.
use greenhub::hub::{self, Greenlet};
use greenhub::sync::mpmc;

fn main() {
    let (tx, _rx) = mpmc::unbounded::<Greenlet<()>>();
    std::thread::spawn(move || tx.send(hub::spawn(|| ())));
}
