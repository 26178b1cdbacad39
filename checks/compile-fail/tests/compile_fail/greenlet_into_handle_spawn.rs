// Nor can a Greenlet be smuggled to another hub inside a remote spawn.
use greenhub::hub;

fn main() {
    let other = hub::handle();
    let g = hub::spawn(|| 1);
    other.spawn(move || g.is_finished());
}
