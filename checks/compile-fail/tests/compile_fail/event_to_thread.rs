// Hub-local primitives are !Send: an Event cannot reach another thread.
use greenhub::sync::Event;

fn main() {
    let ev = Event::new();
    std::thread::spawn(move || ev.set());
}
