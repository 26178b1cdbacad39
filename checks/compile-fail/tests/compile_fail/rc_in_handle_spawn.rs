// A closure holding an Rc cannot be spawned on another hub.
use std::rc::Rc;

use greenhub::hub;

fn main() {
    let shared = Rc::new(5);
    hub::handle().spawn(move || *shared + 1);
}
