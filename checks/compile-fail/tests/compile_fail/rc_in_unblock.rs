// A closure holding an Rc cannot run on the thread pool.
use std::rc::Rc;

use greenhub::threadpool;

fn main() {
    let shared = Rc::new(5);
    threadpool::unblock(move || *shared + 1);
}
